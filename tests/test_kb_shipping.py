"""Published snapshots through the store, for hosts that share no directory (`SWITCHBOARD_KB_SNAPSHOTS=store`):
packed by the process that publishes, unpacked and switched to by every other, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.ports import Encoder
from bot.stores.conversations import ConversationStore
from kb_index.encoder import DEFAULT_MODEL
from kb_index.retriever import HybridRetriever
from kb_index.shipping import follow, pack, share
from kb_index.snapshot import build_snapshot, current_snapshot, rollback
from tests.conftest import both_databases  # noqa: F401 (runs each test on both databases)


def article(article_id: str, title: str, body: str) -> str:
    return f"---\nid: {article_id}\ntitle: {title}\n---\n## {title}\n{body}\n"


@pytest.fixture
def store(make_store: Callable[..., ConversationStore]) -> ConversationStore:
    return make_store()


def test_the_store_keeps_the_newest_packed_snapshots_and_which_one_is_live(store: ConversationStore) -> None:
    assert store.live_snapshot() is None and store.snapshot_archive("20261205T000000-a") is None
    for name in ("20261205T000000-a", "20261205T000100-b", "20261205T000200-c"):
        store.store_snapshot(name, name.encode() * 1000, keep=2)
    assert store.live_snapshot() == "20261205T000200-c"
    assert store.snapshot_archive("20261205T000000-a") is None  # the oldest let go
    assert store.snapshot_archive("20261205T000100-b") == b"20261205T000100-b" * 1000
    assert [(name, live) for name, _, live in store.stored_snapshots()] == [
        ("20261205T000200-c", True), ("20261205T000100-b", False)]
    assert store.make_snapshot_live("20261205T000100-b") and store.live_snapshot() == "20261205T000100-b"
    assert not store.make_snapshot_live("20261205T000000-a") and store.live_snapshot() == "20261205T000100-b"
    store.store_snapshot("20261205T000300-d", b"d", keep=1)
    assert store.snapshot_archive("20261205T000100-b") is None and store.live_snapshot() == "20261205T000300-d"


def test_the_store_keeps_unpublished_edits_in_order_until_a_publish_takes_them(
        store: ConversationStore, tmp_path: Path) -> None:
    from kb_index.editing import SharedEdits

    here, there = tmp_path / "host-a", tmp_path / "host-b"
    for kb in (here, there):
        (kb / "de").mkdir(parents=True)
    on_a, on_b = SharedEdits(store, here), SharedEdits(store, there)
    assert store.kb_edits() == [] and on_b.catch_up() == 0
    (here / "dogs.md").write_text("first", encoding="utf-8")
    on_a.record(here / "dogs.md", "first")
    on_a.record(here / "de" / "dogs.md", "erste")
    on_a.record(here / "dogs.md", "second")  # saved again: the last save wins
    (there / "old.md").write_text("old", encoding="utf-8")
    on_a.record(here / "old.md", None)  # deleted
    last = on_b.catch_up()
    assert (there / "dogs.md").read_text(encoding="utf-8") == "second"
    assert (there / "de" / "dogs.md").read_text(encoding="utf-8") == "erste" and not (there / "old.md").exists()
    store.record_kb_edit("../outside.md", "no")  # a row no save writes
    store.record_kb_edit("notes.txt", "no")
    assert on_b.catch_up() > last and not (tmp_path / "outside.md").exists() and not (there / "notes.txt").exists()
    on_b.forget(last)
    assert [path for _, path, _ in store.kb_edits()] == ["../outside.md", "notes.txt"]
    on_b.forget()
    assert store.kb_edits() == []


def test_a_publish_on_one_host_is_served_by_another_that_shares_no_directory(
        store: ConversationStore, tmp_path: Path, encoder: Encoder) -> None:
    kb, here, there = tmp_path / "kb", tmp_path / "host-a", tmp_path / "host-b"
    kb.mkdir()
    (kb / "returns.md").write_text(article("returns", "Returns", "Return anything within 30 days."), encoding="utf-8")
    first = build_snapshot(kb, here, encoder, model=DEFAULT_MODEL)
    assert share(store, here, keep=5) == first.name
    assert follow(store, there, keep=5) and current_snapshot(there) == there / "snapshots" / first.name
    assert not follow(store, there, keep=5)  # nothing new
    retriever = HybridRetriever(there, encoder)

    (kb / "dogs.md").write_text(article("dogs", "Dogs in our shops", "Dogs on a lead are welcome in every shop."),
                                encoding="utf-8")
    build_snapshot(kb, here, encoder, model=DEFAULT_MODEL)
    share(store, here, keep=5)
    assert follow(store, there, keep=5) and retriever.reload()
    assert retriever.search("can i bring my dog", k=1)[0].article_id == "dogs"
    assert (there / "snapshots" / first.name / "articles" / "returns.md").is_file()  # the sources came too

    rollback(here, first.name)  # stored already: only the store's pointer moves
    share(store, here, keep=5)
    assert follow(store, there, keep=5) and retriever.reload()
    assert retriever.snapshot.path.name == first.name
    assert retriever.search("can i bring my dog", k=1)[0].article_id == "returns"


def test_a_damaged_stored_snapshot_is_refused_and_the_live_one_kept(
        store: ConversationStore, tmp_path: Path, encoder: Encoder, caplog: pytest.LogCaptureFixture) -> None:
    kb, here, there = tmp_path / "kb", tmp_path / "host-a", tmp_path / "host-b"
    kb.mkdir()
    (kb / "returns.md").write_text(article("returns", "Returns", "Return anything within 30 days."), encoding="utf-8")
    live = build_snapshot(kb, here, encoder, model=DEFAULT_MODEL)
    share(store, here, keep=5)
    follow(store, there, keep=5)
    packed = pack(live)
    flipped = packed[:200] + bytes(b ^ 0xFF for b in packed[200:400]) + packed[400:]
    for name, damaged in (("29991231T235957-garbage", b"not an archive"), ("29991231T235958-cut", packed[:-500]),
                          ("29991231T235959-flipped", flipped)):
        store.store_snapshot(name, damaged, keep=5)
        assert not follow(store, there, keep=5)
        assert current_snapshot(there) == there / "snapshots" / live.name
        assert "does not load" in caplog.text
        assert not [p for p in (there / "snapshots").iterdir() if p.name != live.name]  # nothing half-written left
        store.make_snapshot_live(live.name)
    store.store_snapshot("../../elsewhere", packed, keep=10)  # a row no publish writes
    assert not follow(store, there, keep=5) and current_snapshot(there) == there / "snapshots" / live.name


def test_kb_build_on_one_host_reaches_the_running_processes_of_another(
        new_store_url: Callable[[], str], tmp_path: Path, encoder: Encoder,
        with_models: Callable[..., Path]) -> None:
    from click.testing import CliRunner

    from bot.notifier import Notifier
    from bot.stores import open_store
    from kb_index.retriever import SnapshotWatcher
    from kb_index.shipping import StoreSnapshots
    from switchboard.cli import main
    from tests.servers import wait_for

    url = new_store_url()
    kb, elsewhere = tmp_path / "kb", tmp_path / "kb-b"
    kb.mkdir()
    elsewhere.mkdir()
    (kb / "returns.md").write_text(article("returns", "Returns", "Return anything within 30 days."), encoding="utf-8")
    env = {"SWITCHBOARD_STORE_URL": url, "SWITCHBOARD_KB_SNAPSHOTS": "store", "SWITCHBOARD_KB_DIR": str(kb),
           "SWITCHBOARD_INDEX_DIR": str(with_models(tmp_path / "host-a")), "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"),
           "SWITCHBOARD_LANGUAGES": "en"}
    built = CliRunner().invoke(main, ["kb", "build"], env=env)
    assert built.exit_code == 0 and "with the other hosts through the store" in built.output, built.output

    store = open_store(url)
    try:
        host_b = StoreSnapshots(store, tmp_path / "host-b", elsewhere, keep=5)
        host_b.start()  # a host starting: it serves what the deployment published
        assert (elsewhere / "returns.md").is_file()  # and its editor pages start from the published articles
        retriever = HybridRetriever(tmp_path / "host-b", encoder)
        watch = SnapshotWatcher(Notifier(), retriever, host_b.follow, check_seconds=0.2)  # no notice: it checks
        (kb / "dogs.md").write_text(article("dogs", "Dogs in our shops", "Dogs on a lead are welcome."),
                                    encoding="utf-8")
        assert CliRunner().invoke(main, ["kb", "build"], env=env).exit_code == 0
        wait_for(lambda: retriever.search("can i bring my dog", k=1)[0].article_id == "dogs")
        # The host takes the articles just after the snapshot: the retriever may answer from it a moment before.
        wait_for(lambda: (elsewhere / "dogs.md").is_file())
        watch.stop()
    finally:
        store.dispose()


def test_a_host_rolls_back_to_a_version_only_the_store_still_holds(
        new_store_url: Callable[[], str], tmp_path: Path, with_models: Callable[..., Path]) -> None:
    """A host that started after a version was published never unpacked it; `kb versions` shows it as the
    store's, and `kb rollback` takes it from the store, serves it, and makes it the deployment's."""
    from click.testing import CliRunner

    from bot.stores import open_store
    from switchboard.cli import main

    url = new_store_url()
    kb = tmp_path / "kb-a"
    kb.mkdir()
    (kb / "returns.md").write_text(article("returns", "Returns", "Return anything within 30 days."), encoding="utf-8")
    common = {"SWITCHBOARD_STORE_URL": url, "SWITCHBOARD_KB_SNAPSHOTS": "store", "SWITCHBOARD_LANGUAGES": "en",
              "SWITCHBOARD_VAR_DIR": str(tmp_path / "var")}
    host_a = {**common, "SWITCHBOARD_KB_DIR": str(kb), "SWITCHBOARD_INDEX_DIR": str(with_models(tmp_path / "host-a"))}
    host_b = {**common, "SWITCHBOARD_KB_DIR": str(tmp_path / "kb-b"),
              "SWITCHBOARD_INDEX_DIR": str(with_models(tmp_path / "host-b"))}
    assert CliRunner().invoke(main, ["kb", "build"], env=host_a).exit_code == 0
    first = current_snapshot(tmp_path / "host-a")
    assert first is not None
    (kb / "dogs.md").write_text(article("dogs", "Dogs in our shops", "Dogs on a lead are welcome."), encoding="utf-8")
    store = open_store(url)
    try:
        # Saved in the editor pages of another host and not yet published: this build publishes it too.
        store.record_kb_edit("bikes.md", article("bikes", "Bike parking", "Every shop has covered bike racks."))
        built = CliRunner().invoke(main, ["kb", "build"], env=host_a)
        assert built.exit_code == 0 and "Took 1 edit saved in the editor pages" in built.output, built.output
        assert (kb / "bikes.md").is_file() and store.kb_edits() == []
        (tmp_path / "kb-b").mkdir()
        assert follow(store, tmp_path / "host-b", keep=5)  # host B starts now: the second version only
        assert not (tmp_path / "host-b" / "snapshots" / first.name).exists()

        listed = CliRunner().invoke(main, ["kb", "versions"], env=host_b)
        assert listed.exit_code == 0 and f"{first.name}" in listed.output and "in the store" in listed.output, \
            listed.output
        store.record_kb_edit("kayaks.md", article("kayaks", "Kayaks", "We rent kayaks."))
        rolled = CliRunner().invoke(main, ["kb", "rollback", first.name], env=host_b)
        assert rolled.exit_code == 0, rolled.output
        assert store.kb_edits() == []  # undone on every host, as here
        assert current_snapshot(tmp_path / "host-b") == tmp_path / "host-b" / "snapshots" / first.name
        assert sorted(p.name for p in (tmp_path / "kb-b").glob("*.md")) == ["returns.md"]
        assert store.live_snapshot() == first.name  # every other host follows

        missing = CliRunner().invoke(main, ["kb", "rollback", "20200101T000000-gone"], env=host_b)
        assert missing.exit_code != 0 and "here or in the store" in missing.output, missing.output
    finally:
        store.dispose()


def test_an_unknown_way_of_sharing_snapshots_is_refused_with_the_choices(tmp_path: Path) -> None:
    from bot.errors import SwitchboardError
    from switchboard.app import check_settings
    from switchboard.settings import Settings

    with pytest.raises(SwitchboardError, match=r"use files .* or store"):
        check_settings(Settings(kb_snapshots="redis"))
    from click.testing import CliRunner

    from switchboard.cli import main

    built = CliRunner().invoke(main, ["kb", "build"], env={"SWITCHBOARD_KB_SNAPSHOTS": "stor",
                                                           "SWITCHBOARD_INDEX_DIR": str(tmp_path / "index")})
    assert built.exit_code != 0 and "SWITCHBOARD_KB_SNAPSHOTS is 'stor'" in built.output  # before building anything
    built = CliRunner().invoke(main, ["kb", "build"], env={"SWITCHBOARD_KB_SNAPSHOTS": "store",
                                                           "SWITCHBOARD_KB_CHECK_SECONDS": "0",
                                                           "SWITCHBOARD_INDEX_DIR": str(tmp_path / "index")})
    assert built.exit_code != 0 and "SWITCHBOARD_KB_CHECK_SECONDS is 0" in built.output


def test_a_new_host_without_articles_takes_the_published_ones(
        store: ConversationStore, tmp_path: Path, encoder: Encoder) -> None:
    from switchboard.app import store_snapshots
    from switchboard.settings import Settings

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "returns.md").write_text(article("returns", "Returns", "Return anything within 30 days."), encoding="utf-8")
    build_snapshot(kb, tmp_path / "host-a", encoder, model=DEFAULT_MODEL)
    settings = Settings(kb_snapshots="store", kb_dir=tmp_path / "host-b" / "articles", index_dir=tmp_path / "host-b")
    assert store_snapshots(settings, store) is not None and not settings.kb_dir.exists()  # nothing published yet
    share(store, tmp_path / "host-a", keep=5)
    shipped = store_snapshots(settings, store)
    assert shipped is not None
    shipped.start()
    taken = (settings.kb_dir / "returns.md").read_text(encoding="utf-8")
    assert taken == (kb / "returns.md").read_text(encoding="utf-8")
    assert store_snapshots(Settings(kb_snapshots="files"), store) is None


def test_a_server_on_a_host_with_no_articles_answers_from_what_another_host_published(
        tmp_path: Path, with_models: Callable[..., Path]) -> None:
    import requests
    from click.testing import CliRunner

    from switchboard.cli import main
    from tests.servers import running_server, wait_for

    store_url = f"sqlite:///{tmp_path / 'switchboard.db'}"  # the store running_server gives the server too
    kb = tmp_path / "kb-a"
    kb.mkdir()
    (kb / "dogs.md").write_text(article("dogs", "Dogs in our shops", "Dogs on a lead are welcome in every shop."),
                                encoding="utf-8")
    host_a = {"SWITCHBOARD_STORE_URL": store_url, "SWITCHBOARD_KB_SNAPSHOTS": "store", "SWITCHBOARD_KB_DIR": str(kb),
              "SWITCHBOARD_INDEX_DIR": str(with_models(tmp_path / "host-a")),
              "SWITCHBOARD_VAR_DIR": str(tmp_path / "var-a"), "SWITCHBOARD_LANGUAGES": "en"}
    assert CliRunner().invoke(main, ["kb", "build"], env=host_a).exit_code == 0

    with running_server(tmp_path, with_models(tmp_path / "host-b"), SWITCHBOARD_KB_SNAPSHOTS="store",
                        SWITCHBOARD_KB_CHECK_SECONDS="1", SWITCHBOARD_KB_DIR=str(tmp_path / "host-b-articles"),
                        SWITCHBOARD_LANGUAGES="en") as (base, _, _):
        def answer(sender: str, text: str) -> str:
            replies = requests.post(f"{base}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                                    timeout=30).json()
            return " ".join(reply.get("text", "") for reply in replies)

        assert "Dogs on a lead are welcome" in answer("c-1", "can i bring my dog into the shop")
        assert (tmp_path / "host-b-articles" / "dogs.md").is_file()
        (kb / "bikes.md").write_text(article("bikes", "Bike parking", "Every shop has covered bike racks."),
                                     encoding="utf-8")
        assert CliRunner().invoke(main, ["kb", "build"], env=host_a).exit_code == 0
        # No Redis to announce it: the server finds it at its next look in the store (every second here).
        wait_for(lambda: "covered bike racks" in answer(f"c-{time.monotonic()}", "where can i park my bike"),
                 timeout=40)
