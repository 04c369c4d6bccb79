"""Dependencies point inward: `bot/` imports no framework, SDK, index library or sibling."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_BOT = {
    "flask", "werkzeug", "gunicorn", "telegram", "twilio", "faiss", "sentence_transformers", "torch",
    "rasa_sdk", "frontmatter", "actions", "connectors", "handoff", "kb_index", "switchboard",
}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_bot_imports_no_framework_sdk_or_sibling_package() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & FORBIDDEN_IN_BOT)
        for path in (ROOT / "bot").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_connectors_decide_nothing_about_the_engine() -> None:
    for path in (ROOT / "connectors").rglob("*.py"):
        assert not {"kb_index", "handoff", "switchboard"} & imported_modules(path), path


def test_only_settings_reads_the_environment() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for package in ("bot", "kb_index", "connectors", "handoff", "switchboard")
        for path in (ROOT / package).rglob("*.py")
        if ("os.environ.get" in path.read_text(encoding="utf-8") or "os.getenv" in path.read_text(encoding="utf-8"))
        and path != ROOT / "switchboard" / "settings.py"
    ]
    assert readers == []


# bot/'s rooms, top floor first: a room imports the core and the rooms below it, never above or beside.
FLOORS = [["pipeline"], ["dialogue"], ["stores", "delivery"], ["customers", "analytics"]]
CORE = {"messages", "errors", "outcome", "ports", "notifier", "language"}


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_bot_rooms_import_only_the_core_and_rooms_below() -> None:
    floor_of = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}
    rooms = {path.name for path in (ROOT / "bot").iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert rooms == set(floor_of)
    offenders = []
    for path in (ROOT / "bot").rglob("*.py"):
        relative = path.relative_to(ROOT / "bot")
        here = relative.parts[0] if len(relative.parts) > 1 else "core"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bot."):
                there = room_of(node.module)
                if there in CORE or there == here:
                    continue
                if here == "core" or floor_of[there] <= floor_of[here]:
                    offenders.append(f"{relative} imports {node.module}")
    assert offenders == []
