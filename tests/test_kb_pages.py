"""The console's knowledge-base pages: editors edit, test, publish and roll back; agents cannot."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bot.messages import ConversationStatus, EventKind, utcnow
from kb_index.snapshot import current_snapshot
from switchboard.app import services_of
from tests.conftest import Editor, WebChat


def wait_until_live(app: Flask, timeout: float = 10) -> None:
    retriever = services_of(app).retriever
    index_dir = services_of(app).settings.index_dir
    retriever.search("warm up", k=1)
    deadline = time.monotonic() + timeout
    while retriever.snapshot.path != current_snapshot(index_dir):
        assert time.monotonic() < deadline, "the published snapshot did not go live"
        time.sleep(0.01)


def test_agents_without_the_editor_role_get_403(kb_app: Flask) -> None:
    agent = Editor(kb_app, role="agent")
    for path in ("/console/kb/", "/console/kb/new", "/console/kb/test?q=hi", "/console/kb/versions",
                 "/console/kb/gaps", "/console/kb/articles/returns-policy"):
        assert agent.client.get(path).status_code == 403, path
    response = agent.client.post("/console/kb/publish", data={"csrf_token": agent.csrf("/console/")})
    assert response.status_code == 403


def test_signed_out_visitors_are_sent_to_sign_in(kb_app: Flask) -> None:
    response = kb_app.test_client().get("/console/kb/")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


def test_an_editor_writes_tests_and_publishes_an_article(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    page = editor.new_article("snowshoe-rental", "Snowshoe rental",
                              "## Renting snowshoes\nOur Leeds store rents out snowshoes for 12 a day.")
    assert "Saved snowshoe-rental" in page
    kb_dir = services_of(kb_app).settings.kb_dir
    assert (kb_dir / "snowshoe-rental.md").read_text(encoding="utf-8").startswith("---\nid: snowshoe-rental\n")
    listing = editor.client.get("/console/kb/").get_data(as_text=True)
    assert "Not yet published" in listing and "snowshoe-rental" in listing

    before = editor.client.get("/console/kb/test?q=do+you+rent+snowshoes").get_data(as_text=True)
    assert "Not answered" in before
    # The editor tries the draft before publishing: answered from the articles as edited.
    draft = editor.client.get("/console/kb/test?q=do+you+rent+snowshoes&against=draft").get_data(as_text=True)
    assert "rents out snowshoes for 12 a day" in draft and "from the articles as edited" in draft
    assert "(unpublished changes)" in draft

    assert "the bot answers from it now" in editor.post("/console/kb/publish")
    # No waiting: the process that published answers from the new snapshot at once.
    after = editor.client.get("/console/kb/test?q=do+you+rent+snowshoes").get_data(as_text=True)
    assert "rents out snowshoes for 12 a day" in after and "Answered" in after
    # One row per different answer, not one per channel: the channels with buttons add "Did this help?".
    assert after.count("rents out snowshoes for 12 a day") == 2
    assert "<td>web, telegram, messenger, instagram</td>" in after
    customer = WebChat(kb_app, kb_app.test_client())
    assert "rents out snowshoes" in customer.say("do you rent snowshoes")[0]["text"]
    assert "Everything is published" in editor.client.get("/console/kb/").get_data(as_text=True)


def test_edits_and_deletes_reach_the_bot_only_when_published(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    page = editor.post("/console/kb/articles/gift-cards", title="Gift cards", url="", tags="payments",
                       body="## Buying\nGift cards now come in amounts up to 900.", action="save")
    assert "Saved. Publish" in page
    customer = WebChat(kb_app, kb_app.test_client())
    assert "900" not in customer.say("what amounts do gift cards come in")[0]["text"]
    editor.post("/console/kb/publish")
    wait_until_live(kb_app)
    assert "900" in customer.say("what amounts do gift cards come in")[0]["text"]

    editor.post("/console/kb/articles/gift-cards/delete")
    assert not any(p.name == "gift-cards.md" for p in services_of(kb_app).settings.kb_dir.iterdir())
    assert "removed (gift-cards)" in editor.client.get("/console/kb/").get_data(as_text=True)


@pytest.mark.parametrize("article_id", ["../escape", "/etc/passwd", ".hidden", "a/b", "a..b"])
def test_ids_cannot_reach_outside_the_kb(kb_app: Flask, tmp_path: Path, article_id: str) -> None:
    editor = Editor(kb_app)
    files_before = sorted(p.name for p in tmp_path.rglob("*"))
    page = editor.new_article(article_id, "Escape", "## X\nText.")
    assert "the id may use only" in page
    assert sorted(p.name for p in tmp_path.rglob("*")) == files_before


def test_invalid_drafts_say_what_to_fix_and_keep_the_text(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    page = editor.new_article("ok-id", "", "Some text worth keeping.")
    assert "needs a title" in page and "Some text worth keeping." in page
    assert "exists already" in editor.new_article("returns-policy", "Dup", "## X\nText.")


def test_preview_renders_markdown_and_never_raw_html(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    page = editor.new_article("x", "X", "## Heading\n**bold** <script>alert(1)</script> "
                                        "<img src=x onerror=alert(1)> [link](javascript:alert(1))", action="preview")
    assert "<h2>Heading</h2>" in page and "<strong>bold</strong>" in page
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert 'href="javascript:' not in page
    assert not (services_of(kb_app).settings.kb_dir / "x.md").exists()  # a preview saves nothing


def kayak_hire_published(kb_app: Flask) -> tuple[Editor, Path]:
    """An editor who added and published an article; returns them and the snapshot live before."""
    editor = Editor(kb_app)
    first = current_snapshot(services_of(kb_app).settings.index_dir)
    assert first is not None
    editor.new_article("kayak-hire", "Kayak hire", "## Hire\nKayaks can be hired in Bristol.")
    editor.post("/console/kb/publish")
    return editor, first


def test_versions_show_who_published_and_allow_rollback(kb_app: Flask) -> None:
    editor, first = kayak_hire_published(kb_app)
    versions = editor.client.get("/console/kb/versions").get_data(as_text=True)
    assert "editor@example.com" in versions and "added: kayak-hire" in versions
    assert 'data-confirm="Make ' in versions  # asks before it acts
    changes = editor.client.get(f"/console/kb/versions/{current_snapshot(services_of(kb_app).settings.index_dir).name}"
                                "/changes").get_data(as_text=True)
    assert "kayak-hire.md" in changes and '<span class="added">+Kayaks can be hired in Bristol.</span>' in changes
    page = editor.post(f"/console/kb/versions/{first.name}/rollback", restore="files")
    assert f"{first.name} is live again, and its articles are back in the editor" in page
    assert current_snapshot(services_of(kb_app).settings.index_dir) == first
    # The rolled-back article left the editor too: the next publish does not bring it back.
    assert not (services_of(kb_app).settings.kb_dir / "kayak-hire.md").exists()
    assert "kayak-hire" not in editor.client.get("/console/kb/").get_data(as_text=True)
    assert "no snapshot" in editor.post("/console/kb/versions/.building-x/rollback")
    traversal = editor.client.post("/console/kb/versions/..%2F..%2Fetc/rollback",
                                   data={"csrf_token": editor.csrf("/console/kb/")})
    assert traversal.status_code == 404
    assert current_snapshot(services_of(kb_app).settings.index_dir) == first


def test_a_rollback_may_keep_the_articles_being_edited_and_says_what_follows(kb_app: Flask) -> None:
    editor, first = kayak_hire_published(kb_app)
    page = editor.post(f"/console/kb/versions/{first.name}/rollback", restore="none")
    assert "The articles being edited are unchanged: the next publish brings them back." in page
    assert (services_of(kb_app).settings.kb_dir / "kayak-hire.md").exists()
    assert current_snapshot(services_of(kb_app).settings.index_dir) == first


def test_delete_asks_first_and_a_new_article_says_what_an_id_may_be(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    page = editor.client.get("/console/kb/articles/shipping-costs").get_data(as_text=True)
    assert 'data-confirm="Delete the article shipping-costs?' in page
    new = editor.client.get("/console/kb/new").get_data(as_text=True)
    assert "Letters, digits, '.', '_' and '-', starting with a letter or digit (e.g." in new
    refused = editor.post("/console/kb/new", article_id="bad id!", title="Bad", body="## A\ntext")
    assert "bad id!" in refused and "may use only letters, digits" in refused


def test_the_gap_page_lists_what_customers_asked(kb_app: Flask) -> None:
    customer = WebChat(kb_app, kb_app.test_client())
    customer.say("do you rent snowshoes <b>now</b>")
    page = Editor(kb_app).client.get("/console/kb/gaps").get_data(as_text=True)
    assert "do you rent snowshoes &lt;b&gt;now&lt;/b&gt;" in page
    assert "1 not answered" in page


def test_the_gap_page_names_what_no_article_mentions_until_an_article_does(kb_app: Flask) -> None:
    customer = WebChat(kb_app, kb_app.test_client())
    customer.say("how do i reset my netflix password")
    customer.say("how can i reset the netflix password")
    editor = Editor(kb_app)
    page = editor.client.get("/console/kb/gaps").get_data(as_text=True)
    assert "Declined for names no article mentions: <bdi>netflix</bdi> (2)." in page
    editor.post("/console/kb/new", article_id="streaming", title="Puffin films on Netflix", url="", tags="",
                body="## Netflix\nOur expedition films are on Netflix. Reset a Netflix password on netflix.com.",
                action="save")
    editor.post("/console/kb/publish")
    (reply,) = customer.say("how do i reset my netflix password")
    assert "not sure" not in str(reply["text"])  # answered from an article (which one is the ranking's call)
    store = services_of(kb_app).store
    (conversation,) = store.list_conversations(list(ConversationStatus))
    decided = [e.data for e in store.transcript(conversation.conversation_id) if e.kind == EventKind.KB_ANSWER]
    assert [d.get("unknown_names") for d in decided] == [["netflix"], ["netflix"], None]


def test_an_article_without_a_url_is_quoted_without_a_dangling_link(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    editor.post("/console/kb/new", article_id="sledges", title="Sledge hire", url="", tags="",
                body="## Sledges\nWooden sledges can be hired in **Edinburgh** for 15 a day.", action="save")
    editor.post("/console/kb/publish")
    customer = WebChat(kb_app, kb_app.test_client())
    (reply,) = customer.say("can I hire a sledge")
    assert reply["text"] == "Wooden sledges can be hired in Edinburgh for 15 a day.\n\nDid this help?"


def test_editing_keeps_language_channels_and_audience(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    kb_dir = services_of(kb_app).settings.kb_dir
    (kb_dir / "internal.md").write_text("---\nid: internal\ntitle: Override codes\nlang: en\n"
                                        "channels: [web, sms]\naudience: agents\n---\nUse code 4411.\n",
                                        encoding="utf-8")
    page = editor.client.get("/console/kb/articles/internal").get_data(as_text=True)
    form = {name: re.search(rf'name="{name}"[^>]*value="([^"]*)"', page).group(1)  # type: ignore[union-attr]
            for name in ("title", "url", "tags", "lang", "channels")}
    assert form["channels"] == "web, sms" and 'value="agents" selected' in page
    editor.post("/console/kb/articles/internal", body="Use code 4412.", audience="agents", action="save", **form)
    saved = (kb_dir / "internal.md").read_text(encoding="utf-8")
    assert "lang: en" in saved and "- web\n- sms" in saved and "audience: agents" in saved and "4412" in saved


def test_an_agents_only_article_is_never_sent_to_customers(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    editor.post("/console/kb/new", article_id="override", title="Manager override codes", url="", tags="",
                lang="", channels="", audience="agents", body="## Codes\nThe manager override code is 4411.",
                action="save")
    editor.post("/console/kb/publish")
    customer = WebChat(kb_app, kb_app.test_client())
    assert "4411" not in customer.say("what is the manager override code")[0]["text"]
    page = editor.client.get("/console/kb/test?q=what+is+the+manager+override+code").get_data(as_text=True)
    assert "4411" not in page and "<td>Every channel</td>" in page


def test_editors_write_example_questions_and_saving_keeps_them(kb_app: Flask) -> None:
    editor = Editor(kb_app)
    editor.post("/console/kb/new", article_id="deposits", title="Deposits", url="", tags="", lang="",
                channels="", audience="customers", body="## Deposits\nDeposits come back in three days.",
                questions="when do i get my deposit back\r\n\r\ndeposit refund?", action="save")
    saved = (services_of(kb_app).settings.kb_dir / "deposits.md").read_text(encoding="utf-8")
    assert "questions:\n- when do i get my deposit back\n- deposit refund?\n" in saved
    page = editor.client.get("/console/kb/articles/deposits").get_data(as_text=True)
    assert "when do i get my deposit back\ndeposit refund?</textarea>" in page


def test_an_editor_answers_a_gap_with_an_article_and_the_bot_answers_it_from_then_on(kb_app: Flask) -> None:
    customer = WebChat(kb_app, kb_app.test_client())
    question = "is there a student discount"
    assert "not sure" in customer.say(question)[0]["text"]
    editor = Editor(kb_app)
    assert f"<h2><bdi>{question}</bdi>" in editor.client.get("/console/kb/gaps").get_data(as_text=True)
    page = editor.post("/console/kb/gaps/answer", question=question, article_id="discount-codes")
    assert "is an example question of" in page and "Discount codes" in page
    assert f"<h2><bdi>{question}</bdi>" not in page  # the group left the report
    saved = (services_of(kb_app).settings.kb_dir / "discount-codes.md").read_text(encoding="utf-8")
    assert f"questions:\n- {question}\n" in saved
    again = WebChat(kb_app, kb_app.test_client()).say("is there a discount for students?")
    assert "Discount code field" in again[0]["text"]


def test_a_gap_in_german_answered_with_an_article_is_answered_in_german_from_then_on(kb_app: Flask) -> None:
    question = "gibt es einen rabatt für studenten"
    assert WebChat(kb_app, kb_app.test_client()).say(question)[0]["text"].startswith("Entschuldigung")
    Editor(kb_app).post("/console/kb/gaps/answer", question=question, article_id="discount-codes")
    again = WebChat(kb_app, kb_app.test_client()).say(question)[0]["text"]
    assert again.startswith("Diesen Artikel gibt es nur auf Englisch:") and "Discount code field" in again


def test_dismissed_gaps_leave_the_report_and_dates_filter_it(kb_app: Flask) -> None:
    WebChat(kb_app, kb_app.test_client()).say("do you sell Zorbex widgets")
    editor = Editor(kb_app)
    today = utcnow().date().isoformat()
    assert "Zorbex widgets" in editor.client.get(f"/console/kb/gaps?from={today}&to={today}").get_data(as_text=True)
    assert "Zorbex widgets" not in editor.client.get("/console/kb/gaps?to=2020-01-01").get_data(as_text=True)
    assert "not a date" in editor.client.get("/console/kb/gaps?from=yesterday", follow_redirects=True).get_data(
        as_text=True)
    page = editor.post("/console/kb/gaps/dismiss", question="do you sell Zorbex widgets")
    assert "Dismissed 1 question" in page and "<h2><bdi>do you sell Zorbex widgets</bdi>" not in page


def test_where_hosts_share_no_directory_a_publish_and_a_rollback_go_through_the_store(
        tmp_path: Path, index_kb: Any, make_app: Any) -> None:
    import shutil

    from tests.conftest import ROOT

    kb, index = tmp_path / "kb", tmp_path / "index"
    shutil.copytree(ROOT / "data" / "kb", kb)
    first = index_kb(kb, index)
    app = make_app(kb_dir=kb, index_dir=index, kb_snapshots="store")
    store = services_of(app).store
    assert store.live_snapshot() == first.name  # the first host offered what it had
    editor = Editor(app)
    editor.new_article("snowshoe-rental", "Snowshoe rental", "## Renting snowshoes\nWe rent snowshoes.")
    editor.post("/console/kb/publish")
    published = current_snapshot(index)
    assert published is not None and published != first and store.live_snapshot() == published.name
    editor.post(f"/console/kb/versions/{first.name}/rollback", restore="files")
    assert store.live_snapshot() == first.name


def test_editors_on_hosts_that_share_no_directory_edit_one_working_copy(
        tmp_path: Path, index_kb: Any, with_models: Any, make_app: Any) -> None:
    """With SWITCHBOARD_KB_SNAPSHOTS=store an article saved on one host is in every host's editor pages before it
    is published, and a publish on any host takes what was saved on all of them."""
    import shutil

    from kb_index.snapshot import snapshot_sources
    from tests.conftest import ROOT

    kb_a, kb_b = tmp_path / "kb-a", tmp_path / "kb-b"
    shutil.copytree(ROOT / "data" / "kb", kb_a)
    index_kb(kb_a, tmp_path / "index-a")
    host_a = make_app(kb_dir=kb_a, index_dir=tmp_path / "index-a", kb_snapshots="store")
    # A new host, with no articles and no index yet
    host_b = make_app(kb_dir=kb_b, index_dir=with_models(tmp_path / "index-b"), kb_snapshots="store")
    on_a, on_b = Editor(host_a), Editor(host_b, role="admin")

    on_a.new_article("snowshoe-rental", "Snowshoe rental", "## Renting snowshoes\nWe rent snowshoes.")
    assert "Snowshoe rental" in on_b.client.get("/console/kb/").get_data(as_text=True)
    assert "We rent snowshoes" in on_b.client.get("/console/kb/articles/snowshoe-rental").get_data(as_text=True)
    on_b.post("/console/kb/articles/gift-cards/delete")
    assert "Gift cards" not in on_a.client.get("/console/kb/").get_data(as_text=True)

    on_b.post("/console/kb/publish")
    published = current_snapshot(tmp_path / "index-b")
    assert published is not None
    sources = snapshot_sources(published) or {}
    assert "snowshoe-rental.md" in sources and "gift-cards.md" not in sources
    store = services_of(host_a).store
    assert store.live_snapshot() == published.name and store.kb_edits() == []  # nothing left unpublished

    shipped = services_of(host_a).kb_shipping
    assert shipped is not None and shipped.follow()  # as on the publish notice or the next check
    page = on_a.client.get("/console/kb/").get_data(as_text=True)
    assert "Snowshoe rental" in page and "Gift cards" not in page and not (kb_a / "gift-cards.md").exists()

    on_a.new_article("kayak-rental", "Kayak rental", "## Renting kayaks\nWe rent kayaks.")
    on_b.post(f"/console/kb/versions/{published.name}/rollback", restore="files")  # discards unpublished edits
    assert store.kb_edits() == []
    assert shipped.follow() is False and "Kayak rental" not in on_b.client.get("/console/kb/").get_data(as_text=True)
