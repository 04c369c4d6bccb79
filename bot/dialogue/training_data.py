"""Rasa 3 NLU training data (`nlu.yml`): intents, entity annotations, synonyms, lookups, regexes."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.dialogue.domain import DATA_KEYS, Warn, load_yaml_files, read_responses
from bot.errors import SwitchboardError
from bot.language import is_english

log = logging.getLogger(__name__)

# Rasa marks entities inline as [text](entity), [text](entity:value) or [text]{"entity": ...}.
_ANNOTATION = re.compile(r"\[(?P<text>[^\]]+)\](?:\((?P<spec>[^)]*)\)|(?P<json>\{[^}]*\}))")
_JSON_ENTITY = re.compile(r'"entity"\s*:\s*"(?P<entity>[^"]+)"')
_JSON_VALUE = re.compile(r'"value"\s*:\s*"(?P<value>[^"]+)"')
_JSON_LABEL = {"role": re.compile(r'"role"\s*:\s*"(?P<label>[^"]+)"'),
               "group": re.compile(r'"group"\s*:\s*"?(?P<label>[^",}]+)"?')}
WORD_BEFORE = re.compile(r"(\w+)\W*$")  # the word before an entity: its role's or group's cue
_ITEM_KEYS = {"intent", "synonym", "lookup", "regex"}


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    # The language the example is written in, from its intent block's `metadata: {language: de}`; None: the
    # language of the project's own examples, English. Only the classifier of other languages learns from the
    # examples in those languages.
    language: str | None = None

    @property
    def english(self) -> bool:
        """Whether the English intent classifier learns from this example."""
        return self.language is None or is_english(self.language)


@dataclass(frozen=True)
class NluData:
    examples: tuple[Example, ...]
    synonyms: dict[str, str] = field(default_factory=dict)           # variant (casefolded) -> value
    lookups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # entity -> values
    regexes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # entity -> patterns
    # Responses kept beside the examples, as Rasa keeps a retrieval intent's (`utter_faq/opening_hours`).
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Entity roles and groups by the word before the entity in the annotated examples:
    # ("role" | "group", entity, word casefolded) -> the label, where that word was seen with one label only.
    cues: dict[tuple[str, str, str], str] = field(default_factory=dict)

    @property
    def english_examples(self) -> tuple[Example, ...]:
        """The examples in English (or of no language given): what the English intent classifier learns."""
        return tuple(example for example in self.examples if example.english)

    def by_intent(self) -> dict[str, list[str]]:
        """The examples grouped by intent, in file order."""
        grouped: dict[str, list[str]] = {}
        for example in self.examples:
            grouped.setdefault(example.intent, []).append(example.text)
        return grouped


def load_nlu(path: Path, warn: Warn = log.warning, require_examples: bool = True) -> NluData:
    """Read Rasa 3 NLU data: a file, or the `nlu` parts of every file under a directory (Rasa's `data/`);
    unsupported keys are reported, not fatal."""
    examples: list[Example] = []
    synonyms: dict[str, str] = {}
    lookups: dict[str, list[str]] = {}
    regexes: dict[str, list[str]] = {}
    responses: dict[str, list[dict[str, Any]]] = {}
    cues: dict[tuple[str, str, str], set[str]] = {}
    tree = path.is_dir()
    for file, document in load_yaml_files(path, "NLU data"):
        for key in document:
            if key not in (DATA_KEYS if tree else ("version", "nlu", "responses")):
                warn(f"{file}: key '{key}' is ignored (Switchboard reads 'nlu' from NLU files)")
        _read_items(file, document.get("nlu") or (), warn, examples, synonyms, lookups, regexes, cues)
        responses |= read_responses(document, file, warn)
    if require_examples and not examples:
        raise SwitchboardError(f"{path} has no intents with examples under the 'nlu' key")
    return NluData(tuple(examples), synonyms,
                   {entity: tuple(dict.fromkeys(values)) for entity, values in lookups.items()},
                   {entity: tuple(patterns) for entity, patterns in regexes.items()}, responses,
                   {cue: next(iter(labels)) for cue, labels in cues.items() if len(labels) == 1})


def _read_items(path: Path, items: Iterable[Any], warn: Warn, examples: list[Example], synonyms: dict[str, str],
                lookups: dict[str, list[str]], regexes: dict[str, list[str]],
                cues: dict[tuple[str, str, str], set[str]]) -> None:
    for item in items:
        if not isinstance(item, dict):
            warn(f"{path}: an item of 'nlu' is not a mapping and is ignored")
            continue
        kinds = _ITEM_KEYS & item.keys()
        if len(kinds) != 1:
            warn(f"{path}: an item of 'nlu' with keys {sorted(item)} is ignored (expected one of "
                 f"{', '.join(sorted(_ITEM_KEYS))})")
            continue
        kind = kinds.pop()
        name = str(item[kind])
        for key in item.keys() - {kind, "examples", "metadata"}:
            warn(f"{path}: key '{key}' of {kind} '{name}' is ignored")
        lines = _example_lines(item.get("examples"))
        if kind == "intent":
            language = _language(path, name, item.get("metadata"), warn)
            for line in lines:
                text = _strip_annotations(line, synonyms, lookups, cues)
                if text:
                    examples.append(Example(text, name, language))
        elif kind == "synonym":
            for line in lines:
                synonyms[line.casefold()] = name
        elif kind == "lookup":
            lookups.setdefault(name, []).extend(lines)
        else:
            for pattern in lines:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise SwitchboardError(f"{path}: regex '{name}' has an invalid pattern {pattern!r}: {exc}") \
                        from exc
            regexes.setdefault(name, []).extend(lines)


def _language(path: Path, intent: str, metadata: object, warn: Warn) -> str | None:
    """The language an intent block's examples are written in: its metadata's `language` (Rasa keeps any metadata
    on an intent; Switchboard reads this key)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise SwitchboardError(f"{path}: the metadata of intent '{intent}' is not a mapping; write it as "
                               "`metadata: {language: de}`")
    for key in metadata.keys() - {"language"}:
        warn(f"{path}: metadata '{key}' of intent '{intent}' is ignored (Switchboard reads 'language')")
    language = metadata.get("language")
    if language is None:
        return None
    if not isinstance(language, str) or not language.strip():
        raise SwitchboardError(f"{path}: intent '{intent}' has metadata language {language!r}; write a language "
                               "code such as de, zh-TW or th")
    return language.strip()


def _example_lines(raw: object) -> list[str]:
    if isinstance(raw, list):  # some files list examples as a YAML sequence
        return [str(line).strip() for line in raw if str(line).strip()]
    return [line.strip()[2:].strip() for line in str(raw or "").splitlines() if line.strip().startswith("- ")]


def _strip_annotations(line: str, synonyms: dict[str, str], lookups: dict[str, list[str]],
                       cues: dict[tuple[str, str, str], set[str]]) -> str:
    """Return the example's plain text; annotated values become lookup entries of their entity, and the word
    before an entity with a role or group a cue for it."""

    def plain(match: re.Match[str]) -> str:
        text = match["text"]
        entity, value = None, None
        if match["spec"] is not None:
            entity, _, value = match["spec"].partition(":")
        elif (found := _JSON_ENTITY.search(match["json"])) is not None:
            entity = found["entity"]
            value_match = _JSON_VALUE.search(match["json"])
            value = value_match["value"] if value_match else None
        if entity:
            lookups.setdefault(entity.strip(), []).append(text)
            if value and value.strip() != text:
                synonyms[text.casefold()] = value.strip()
            before = WORD_BEFORE.search(_ANNOTATION.sub(lambda m: m["text"], line[:match.start()]))
            for kind, pattern in _JSON_LABEL.items():
                label = pattern.search(match["json"] or "")
                if label and before:
                    cues.setdefault((kind, entity.strip(), before[1].casefold()), set()).add(label["label"].strip())
        return text

    return _ANNOTATION.sub(plain, line).strip()
