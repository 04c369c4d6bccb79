"""`switchboard kb lint`: problems in the article files, each with its file and line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from kb_index.articles import AUDIENCES, KNOWN_CHANNELS, KNOWN_KEYS, VALID_ID


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    severity: str  # "error" stops a build; "warning" is advice
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"


def lint_kb(kb_dir: Path, max_chars: int = 20_000) -> list[Problem]:
    """Check every `*.md` article under a directory; problems come sorted by file and line."""
    problems: list[Problem] = []
    first_seen: dict[str, Path] = {}
    for path in sorted(kb_dir.rglob("*.md")):
        problems.extend(_lint_file(path, max_chars, first_seen))
    return problems


def _lint_file(path: Path, max_chars: int, first_seen: dict[str, Path]) -> list[Problem]:
    def problem(line: int, message: str, severity: str = "error") -> Problem:
        return Problem(path, line, severity, message)

    raw = path.read_bytes()
    if b"\0" in raw:
        return [problem(1, "a binary file, not a Markdown article")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        return [problem(line, "not valid UTF-8; save the file as UTF-8")]
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return [problem(1, "no front matter: start the file with a '---' line, then id and title")]
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if end is None:
        return [problem(1, "the front matter is not closed by a '---' line")]
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [problem(mark.line + 2 if mark else 2,
                        f"broken front matter: {getattr(exc, 'problem', None) or exc}")]
    if not isinstance(meta, dict):
        return [problem(2, "the front matter must be key: value lines")]

    def line_of(key: str) -> int:
        return next((i + 1 for i, line in enumerate(lines[1:end], start=1) if line.startswith(f"{key}:")), 1)

    found = []
    article_id = meta.get("id")
    if not article_id:
        found.append(problem(1, "the front matter has no id"))
    elif not isinstance(article_id, str | int) or not VALID_ID.fullmatch(str(article_id)):
        found.append(problem(line_of("id"), f"the id {article_id!r} may use only letters, digits, '.', '_' and "
                                            "'-', and must start with a letter or digit"))
    elif str(article_id) in first_seen:
        found.append(problem(line_of("id"), f"the id {article_id!r} is used by {first_seen[str(article_id)]} too"))
    else:
        first_seen[str(article_id)] = path
    if not meta.get("title"):
        found.append(problem(1, "the front matter has no title"))
    url = meta.get("url")
    if url is not None and not str(url).startswith(("https://", "http://")):
        found.append(problem(line_of("url"), "the url should start with https://", "warning"))
    tags = meta.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        found.append(problem(line_of("tags"), "tags should be a list, e.g. [orders, shipping]", "warning"))
    channels = meta.get("channels")
    if channels is not None:
        names = channels if isinstance(channels, list) else [channels]
        for name in names:
            if name not in KNOWN_CHANNELS:
                found.append(problem(line_of("channels"), f"unknown channel {name!r}; use "
                                                          f"{', '.join(KNOWN_CHANNELS)}"))
    audience = meta.get("audience")
    if audience is not None and audience not in AUDIENCES:
        found.append(problem(line_of("audience"), f"audience must be one of {', '.join(AUDIENCES)}"))
    for key in sorted(set(meta) - KNOWN_KEYS):
        found.append(problem(line_of(str(key)), f"unknown front matter key {key!r}", "warning"))
    body = "\n".join(lines[end + 1:]).strip()
    if not body:
        found.append(problem(end + 2, "the article has no text"))
    elif len(body) > max_chars:
        found.append(problem(end + 2, f"the article has {len(body):,} characters; split it into articles under "
                                      f"{max_chars:,} so answers stay focused", "warning"))
    return found
