"""Entities from regexes and lookup tables, normalised through synonyms."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.dialogue.training_data import WORD_BEFORE, NluData


@dataclass(frozen=True)
class Entity:
    entity: str
    value: str
    start: int
    end: int
    extractor: str
    role: str | None = None
    group: str | None = None

    def as_rasa(self) -> dict[str, object]:
        found: dict[str, object] = {"entity": self.entity, "value": self.value, "start": self.start,
                                    "end": self.end, "extractor": self.extractor}
        return found | {key: value for key, value in (("role", self.role), ("group", self.group)) if value}


class EntityExtractor:
    """Finds entities by pattern: `regex` items and `lookup` tables (whole words, any case). An entity's role
    or group is the one the word before it marked in the annotated examples ("from [Berlin]{"entity": "city",
    "role": "departure"}" teaches that "from" comes before a departure city); none where that word is unknown
    or marked more than one."""

    def __init__(self, data: NluData) -> None:
        self._synonyms = data.synonyms
        self._cues = data.cues
        self._patterns: list[tuple[str, str, re.Pattern[str]]] = []
        for entity, patterns in data.regexes.items():
            for pattern in patterns:
                self._patterns.append((entity, "RegexEntityExtractor", re.compile(pattern, re.IGNORECASE)))
        for entity, listed in data.lookups.items():
            # A synonym of a listed value is found too, and normalised to that value.
            values = [*listed, *(variant for variant, value in data.synonyms.items() if value in listed)]
            if values:
                # Longest first, so "sleeping bag" wins over "bag".
                alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
                self._patterns.append((entity, "LookupEntityExtractor",
                                       re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)))

    def extract(self, text: str) -> list[Entity]:
        """Every entity found in the text, in text order; overlapping finds keep the first pattern's."""
        found: list[Entity] = []
        for entity, extractor, pattern in self._patterns:
            for match in pattern.finditer(text):
                if not match.group(0) or any(e.start < match.end() and match.start() < e.end for e in found):
                    continue
                value = self._synonyms.get(match.group(0).casefold(), match.group(0))
                before = WORD_BEFORE.search(text[:match.start()])
                word = before[1].casefold() if before else ""
                found.append(Entity(entity, value, match.start(), match.end(), extractor,
                                    self._cues.get(("role", entity, word)), self._cues.get(("group", entity, word))))
        return sorted(found, key=lambda e: e.start)
