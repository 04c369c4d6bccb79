"""Articles in several languages: a translation names its original (`translation_of`) and its `lang`;
questions are matched against the originals, and the customer is quoted the version in their language."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bot.errors import SwitchboardError
from bot.messages import EventKind
from bot.ports import Encoder
from kb_index.articles import load_articles
from kb_index.multilingual import MultilingualModel
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import build_snapshot, load_snapshot
from switchboard.app import services_of
from tests.conftest import ROOT, Editor
from tests.dialogue import RecordingChannel


def test_a_question_in_german_is_quoted_the_german_version(make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    (reply,) = chat.say("Wie hoch sind die Versandkosten?")
    assert reply.startswith("Der Standardversand kostet 4,95")
    assert 'Mehr in "Versandkosten": https://help.puffin-outdoor.example/de/versand/kosten' in reply
    assert "Englisch" not in reply
    kb = _kb_event(chat)
    assert kb["decision"] == "answer" and kb["offered"] == ["shipping-costs"]  # decided as the original
    (message,) = chat.messages_in()
    assert message.data["answered_by"]["article_id"] == "shipping-costs.de"


def test_without_a_translation_the_english_article_comes_with_a_note(
        make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    (reply,) = chat.say("Passwort vergessen, wie kann ich es zurücksetzen?")
    assert _kb_event(chat)["offered"] == ["password-reset"]
    assert reply.startswith("Diesen Artikel gibt es nur auf Englisch:\n\n")


def test_english_questions_never_meet_a_translation(make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    (reply,) = chat.say("how much is shipping")
    assert reply.startswith("Standard delivery costs EUR 4.95")


def test_choices_carry_the_original_and_are_titled_in_the_customers_language(
        make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    chat.say("寄到國外運費多少")  # "how much is shipping abroad", in traditional Chinese
    kb = _kb_event(chat)
    assert kb["decision"] == "choices" and {"shipping-costs", "shipping-international"} <= set(kb["offered"])
    outcome = chat.last_outcome
    assert outcome is not None
    titles = {b.payload: b.title for b in outcome.replies[0].buttons}
    assert titles['/kb_article{"article_id": "shipping-costs"}'] == "運費"  # its traditional Chinese version
    assert titles['/kb_article{"article_id": "shipping-international"}'] == "International shipping and customs"
    replies = chat.say('/kb_article{"article_id": "shipping-costs"}')
    assert "標準配送運費為 4.95 歐元" in replies[0]


def test_a_question_in_the_language_of_a_translation_is_answered_from_it(
        make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    replies = chat.say("可以退貨嗎")  # "can I return things": the article is in traditional Chinese
    kb = _kb_event(chat)
    assert kb["decision"] == "answer" and kb["offered"] == ["returns-policy"]
    assert replies[0].startswith("收到商品後 30 天內")


def test_the_snapshot_searches_originals_and_keeps_translations_for_quoting(index_dir: Path) -> None:
    snapshot = load_snapshot(_live(index_dir))
    assert snapshot.searchable == sum(1 for c in snapshot.chunks if not c.translation_of) < len(snapshot.chunks)
    assert all(not c.translation_of for c in snapshot.originals)
    assert snapshot.index.ntotal == snapshot.searchable
    assert snapshot.multilingual is not None and snapshot.multilingual.ntotal == len(snapshot.chunks)
    assert {lang for (original, lang) in snapshot.translations if original == "shipping-costs"} == {
        "de", "bg", "zh", "zh-TW", "th"}


def test_a_translation_is_found_by_language_then_by_its_base(index_dir: Path, encoder: Encoder,
                                                             multilingual: MultilingualModel) -> None:
    retriever = HybridRetriever(index_dir, encoder, multilingual=multilingual)
    (english,) = retriever.search("how much is shipping", k=1)
    assert retriever.translation(english, "en") is None and retriever.translation(english, "fr") is None
    german = retriever.translation(english, "de-AT")
    assert german is not None and german.article_id == "shipping-costs.de"
    assert german.heading == "Was kostet der Versand?"  # the section that matches, not the first one found
    hong_kong = retriever.translation(english, "zh-HK")  # no zh-HK version: the Chinese one
    assert hong_kong is not None and hong_kong.article_id == "shipping-costs.zh"
    bulky = next(p for p in retriever.search("tent over 10 kg freight fee", k=5) if p.topic == "shipping-costs")
    bulky_th = retriever.translation(bulky, "th")
    assert bulky_th is not None and bulky_th.heading == "สินค้าขนาดใหญ่"


def test_without_other_languages_translations_are_left_out(tmp_path: Path, encoder: Encoder) -> None:
    lines: list[str] = []
    built = build_snapshot(ROOT / "data" / "kb", tmp_path / "index", encoder, report=lines.append)
    snapshot = load_snapshot(built)
    assert all(not c.translation_of for c in snapshot.chunks)
    assert any("left out 20 chunks of translated articles" in line for line in lines)


@pytest.mark.parametrize(("front", "message"), [
    ("id: a.de\ntitle: A\nlang: de\ntranslation_of: nothing", "not an article id"),
    ("id: a.de\ntitle: A\ntranslation_of: a", "needs `lang:`"),
    ("id: a.bg\ntitle: A\nlang: bg\ntranslation_of: b", "must name the original"),
])
def test_a_broken_translation_link_is_refused_with_what_to_fix(tmp_path: Path, front: str, message: str) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("---\nid: a\ntitle: A\n---\nText.\n", encoding="utf-8")
    (kb / "b.md").write_text("---\nid: b\ntitle: B\nlang: de\ntranslation_of: a\n---\nText.\n", encoding="utf-8")
    (kb / "c.md").write_text(f"---\n{front}\n---\nText.\n", encoding="utf-8")
    with pytest.raises(SwitchboardError, match=message):
        load_articles(kb)


def test_the_sample_translations_are_linked(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "data" / "kb", tmp_path / "kb")
    articles = load_articles(tmp_path / "kb")
    translated = {(a.translation_of, a.lang) for a in articles if a.translation_of}
    assert translated == {(original, lang) for original in ("shipping-costs", "returns-policy")
                          for lang in ("de", "bg", "zh", "zh-TW", "th")}


def _live(index_dir: Path) -> Path:
    from kb_index.snapshot import current_snapshot

    live = current_snapshot(index_dir)
    assert live is not None
    return live


def _kb_event(chat: RecordingChannel) -> dict[str, Any]:
    events = chat.store.transcript(chat.conversation().conversation_id)
    return [e.data for e in events if e.kind == EventKind.KB_ANSWER][-1]


def test_the_editor_shows_which_languages_each_article_lacks(kb_app: Flask) -> None:
    page = Editor(kb_app).client.get("/console/kb/").get_data(as_text=True)
    row = page.split(">shipping-costs</td>", 1)[1].split("</tr>", 1)[0]
    assert "en, de, bg, zh, zh-TW, th" in row and "missing" not in row
    row = page.split(">password-reset</td>", 1)[1].split("</tr>", 1)[0]
    assert "missing de, bg, zh, zh-TW, th" in row
    row = page.split(">shipping-costs.de</td>", 1)[1].split("</tr>", 1)[0]
    assert "de: translation of" in row


def test_an_editor_adds_a_translation_and_its_link_survives_an_edit(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    editor.post("/console/kb/new", article_id="password-reset.de", title="Passwort vergessen",
                body="Klicken Sie auf der Anmeldeseite auf \"Passwort vergessen\".", lang="de",
                translation_of="password-reset", action="save")
    page = editor.client.get("/console/kb/").get_data(as_text=True)
    assert "missing bg, zh, zh-TW, th" in page.split(">password-reset</td>", 1)[1].split("</tr>", 1)[0]
    editor.post("/console/kb/articles/password-reset.de", title="Passwort vergessen?", lang="de",
                translation_of="password-reset", body="Neuer Text.", action="save")
    files = services_of(kb_app).settings.kb_dir
    (article,) = [a for a in load_articles(files) if a.article_id == "password-reset.de"]
    assert (article.translation_of, article.lang, article.title) == ("password-reset", "de", "Passwort vergessen?")


@pytest.mark.parametrize(("form", "message"), [
    ({"translation_of": "no-such-article", "lang": "de"}, "there is no article"),
    ({"translation_of": "shipping-costs.de", "lang": "bg"}, "is itself a translation"),
    ({"translation_of": "shipping-costs"}, "a translation needs its language"),
])
def test_an_editor_is_told_what_is_wrong_with_a_translation_link(kb_app: Flask, form: dict[str, str],
                                                                 message: str) -> None:
    page = Editor(kb_app).post("/console/kb/new", article_id="x.bg", title="X", body="Text.", action="save",
                               **form)
    assert message in page
    assert not [a for a in load_articles(services_of(kb_app).settings.kb_dir) if a.article_id == "x.bg"]


def test_an_original_with_translations_is_not_deleted_from_under_them(kb_app: Flask) -> None:
    page = Editor(kb_app).post("/console/kb/articles/shipping-costs/delete")
    assert "has translations" in page
    assert (services_of(kb_app).settings.kb_dir / "shipping-costs.md").exists()
