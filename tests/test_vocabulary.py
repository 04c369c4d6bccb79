"""The KB's own words: typos mended against them, and names it never mentions told apart."""

from __future__ import annotations

from kb_index.vocabulary import KbVocabulary, international_words

KB = ["Our warranty covers tents and backpacks for two years.", "We ship with DHL and Royal Mail.",
      "More information about your email address and password."]


def test_typos_become_the_kbs_own_words_and_real_words_stay() -> None:
    vocabulary = KbVocabulary(KB)
    assert vocabulary.correct("whats the Warrenty on a tent") == "whats the warranty on a tent"
    assert vocabulary.correct("can i bring my dog") == "can i bring my dog"  # a word, not a typo


def test_names_are_words_as_common_elsewhere_as_in_english() -> None:
    names = international_words()
    assert {"netflix", "instagram", "garmin", "dhl", "decathlon"} <= names
    assert not {"rucksack", "register", "mend", "guarantee", "dog", "parcel"} & names
    assert not {"video", "online", "hotel"} & names  # everyday words, however international
    # ... but the commonest brands, which languages of other scripts write in Latin letters too
    assert {"facebook", "youtube", "twitter"} <= names and not {"radio", "film", "sport", "email"} & names
    vocabulary = KbVocabulary(KB, names)
    assert vocabulary.unknown_names("wie lösche ich mein facebook konto", "de") == ["facebook"]
    assert not {"portugal", "malta", "amsterdam", "glasgow"} & names  # places: "do you ship to portugal"
    assert 5_000 < len(names) < 12_000


def test_a_question_naming_what_the_kb_never_mentions_is_told() -> None:
    vocabulary = KbVocabulary(KB, international_words())
    assert vocabulary.unknown_names("how do i reset my netflix password") == ["netflix"]
    assert vocabulary.unknown_names("my garmin and my garmin watch") == ["garmin"]  # each name once
    assert vocabulary.unknown_names("nettflix pasword reset") == []  # misspelt, no word wordfreq lists: missed
    assert vocabulary.unknown_names("my DHL parcel is late") == []  # the KB mentions it
    assert vocabulary.unknown_names("broken buckle on my rucksack") == []  # English words are no names
    assert vocabulary.unknown_names("edit my personal info") == []  # the start of a KB word: "information"
    assert vocabulary.unknown_names("change my e-mail") == []  # "email"
    assert KbVocabulary(KB).unknown_names("my netflix password") == []  # no list of names: none found


def test_a_customers_own_name_is_no_topic() -> None:
    vocabulary = KbVocabulary(KB, international_words())
    assert "sophie" in international_words()  # people's names are as international as brands
    assert vocabulary.unknown_names("hi, I'm Sophie, is my tent under warranty? thanks, sophie") == []
    assert vocabulary.unknown_names("is my tent under warranty? cheers, Olga Kowalski") == []
    assert vocabulary.unknown_names("my friend Ivan bought me a tent, is it under warranty") == []
    assert vocabulary.unknown_names("first name is Ingrid, surname is Chen. is my tent under warranty") == []
    assert vocabulary.unknown_names("is my tent under warranty?\n\nThanks\nSophie") == []  # a mail's sign-off
    assert vocabulary.unknown_names("Sophie here: is my tent under warranty", people=["Sophie Martin"]) == []
    assert vocabulary.unknown_names("Sophie here: my netflix password", people=["Sophie Martin"]) == ["netflix"]


def test_names_are_told_in_every_script_and_a_languages_own_words_are_not_names() -> None:
    vocabulary = KbVocabulary(KB, international_words())
    assert vocabulary.unknown_names("我的netflix密码忘了", "zh") == ["netflix"]
    assert vocabulary.unknown_names("รีเซ็ตรหัสผ่าน Netflix ยังไง", "th") == ["netflix"]
    # German words a German question is made of are no names in it ("kann", "ich" are names to English).
    assert {"kann", "ich"} <= international_words()
    assert vocabulary.unknown_names("kann ich mein netflix passwort zurücksetzen", "de") == ["netflix"]


def test_in_a_language_of_another_script_a_latin_word_is_a_name() -> None:
    """Chinese text borrows brands in their Latin letters, so wordfreq's Chinese list holds "gmail", "ios" or
    "html" more often than its English one does: they are still names, not Chinese words (only a language
    written in Latin letters has such words of its own)."""
    vocabulary = KbVocabulary(KB, international_words())
    assert vocabulary.unknown_names("gmail密碼怎麼重設", "zh-TW") == ["gmail"]
    assert vocabulary.unknown_names("gmail密码怎么重置", "zh") == ["gmail"]
    assert vocabulary.unknown_names("как да си сменя паролата за gmail", "bg") == ["gmail"]
    assert vocabulary.unknown_names("kann ich mein gmail passwort zurücksetzen", "de") == ["gmail"]
