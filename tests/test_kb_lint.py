"""`switchboard kb lint` names every problem with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.errors import SwitchboardError
from kb_index.articles import load_articles
from kb_index.lint import lint_kb
from switchboard.cli import main
from tests.conftest import ROOT

GOOD = "---\nid: {id}\ntitle: A title\nurl: https://example.test/a\ntags: [a]\n---\n## Part\nSome text.\n"


def problems(tmp_path: Path, files: dict[str, str | bytes]) -> list[str]:
    for name, content in files.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return [f"{p.path.name}:{p.line}: {p.severity}: {p.message}" for p in lint_kb(tmp_path)]


def test_the_sample_kb_is_clean() -> None:
    assert lint_kb(ROOT / "data" / "kb") == []


def test_duplicate_ids_name_both_files(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.md": GOOD.format(id="same"), "b.md": GOOD.format(id="same")})
    assert found == [f"b.md:2: error: the id 'same' is used by {tmp_path / 'a.md'} too"]


@pytest.mark.parametrize("content, expected", [
    ("no front matter\n", "x.md:1: error: no front matter"),
    ("---\nid: x\ntitle: t\nbody\n", "x.md:1: error: the front matter is not closed"),
    ("---\nid: x\ntitle: a: b\n---\ntext\n", "x.md:3: error: broken front matter"),
    ("---\ntitle: t\n---\ntext\n", "x.md:1: error: the front matter has no id"),
    ("---\nid: x\n---\ntext\n", "x.md:1: error: the front matter has no title"),
    ("---\nid: ../../etc/passwd\ntitle: t\n---\ntext\n", "x.md:2: error: the id '../../etc/passwd' may use only"),
    ("---\nid: a..b\ntitle: t\n---\ntext\n", "x.md:2: error: the id 'a..b' may use only"),
    ("---\nid: x\ntitle: t\n---\n\n", "x.md:5: error: the article has no text"),
    ("---\nid: x\ntitle: t\nurl: ftp://x\n---\ntext\n", "x.md:4: warning: the url should start with https://"),
    ("---\nid: x\ntitle: t\ncolour: red\n---\ntext\n", "x.md:4: warning: unknown front matter key 'colour'"),
    ("---\nid: x\ntitle: t\nchannels: [fax]\n---\ntext\n", "x.md:4: error: unknown channel 'fax'"),
    ("---\nid: x\ntitle: t\naudience: robots\n---\ntext\n", "x.md:4: error: audience must be one of"),
    ("---\nid: x\ntitle: t\n---\n" + "word " * 5000, "x.md:5: warning: the article has 24,999 characters"),
])
def test_each_problem_is_reported_at_its_line(tmp_path: Path, content: str, expected: str) -> None:
    (found,) = problems(tmp_path, {"x.md": content})
    assert found.startswith(expected), found


def test_binary_and_non_utf8_files_are_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.md": b"\x89PNG\r\n\x1a\n\x00\x00", "b.md": b"---\nid: b\ntitle: \xff\n---\nx"})
    assert found == ["a.md:1: error: a binary file, not a Markdown article",
                     "b.md:3: error: not valid UTF-8; save the file as UTF-8"]


def test_the_build_refuses_path_tricks_in_ids(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("---\nid: ../x\ntitle: t\n---\ntext\n", encoding="utf-8")
    with pytest.raises(SwitchboardError, match="may use only"):
        load_articles(tmp_path)


def test_the_command_exits_non_zero_on_errors(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("---\ntitle: t\n---\ntext\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["kb", "lint", "--source", str(tmp_path)])
    assert result.exit_code == 1
    assert "x.md:1: error: the front matter has no id" in result.output
    assert "1 articles checked: 1 errors, 0 warnings" in result.output
    clean = CliRunner().invoke(main, ["kb", "lint", "--source", str(ROOT / "data" / "kb")])
    assert clean.exit_code == 0 and "0 errors" in clean.output
