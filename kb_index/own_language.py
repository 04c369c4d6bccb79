"""Text in the question's own language: a Chinese shop's Chinese articles asked in Chinese, an English
article's Chinese translation, a Chinese example question an editor taught.

The multilingual encoder scores any text in a question's own language about as high as the right
article in another language (unrelated pairs: 0.82 to 0.87, Chinese the highest), so such text is
scored less an offset that puts it on the scale the decision for other languages was calibrated on.
Where the words themselves help, a lexical bonus in that language is added first, read in any script:
pairs of characters within a run of Chinese or Thai, which are written without spaces, and lower-cased
words elsewhere (Chinese only, so far). Each language's figures were chosen on its dev questions against
the sample articles written in it (data/kb_eval/kb; docs/kb-quality.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby

import bm25s
import numpy as np

from bot.language import base_language, is_english, with_fallback, written_without_spaces
from kb_index.articles import Chunk


@dataclass(frozen=True)
class OwnLanguage:
    offset: float                  # subtracted from the multilingual cosine
    lexical_weight: float = 0.0    # BM25 bonus: lexical_weight * b / (b + lexical_saturation)
    lexical_saturation: float = 5.0


# Each chosen on the language's dev questions against the sample articles written in it (data/kb_eval/kb):
# the smallest offset that declines three in four unanswerable dev questions. Words helped Chinese only:
# German (Snowball stems) and Thai (character pairs) reached a little more of dev but answered more wrongly
# or reached less of test, Bulgarian no more.
OWN_LANGUAGES: Mapping[str, OwnLanguage] = {
    "de": OwnLanguage(0.045),
    "zh": OwnLanguage(0.09, lexical_weight=0.1),
    "zh-TW": OwnLanguage(0.055),
    "bg": OwnLanguage(0.055),
    "th": OwnLanguage(0.055),
    # English text meets the multilingual encoder only in a KB that mixes English articles with others (an
    # English-only KB is the English encoder's), blended there with the English encoder's score
    # (retriever.Fusion.english_blend): chosen with that weight on the English dev questions against the
    # sample KB with every third article in German, Chinese, Bulgarian, Thai or traditional Chinese, as the
    # smallest that keeps 92% of the answers right and declines 80% of the unanswerable questions. Chosen
    # in mixed KBs, it takes no `Fusion.mixed_own_offset` on top.
    "en": OwnLanguage(0.04),
}

# Pairs of (question's, text's) languages scored apart, chosen the same way: English questions to a KB with
# no English article (German, Bulgarian, Thai and traditional Chinese text score higher against them than
# simplified Chinese does), and Chinese in one script asked of the other script's articles.
# Every other pair across languages is scored as the decision for other languages was calibrated: a question
# against English articles.
ACROSS_LANGUAGES: Mapping[tuple[str, str], float] = {
    ("en", "de"): 0.02, ("en", "bg"): 0.015, ("en", "th"): 0.01, ("en", "zh-TW"): 0.005,
    ("zh-TW", "zh"): 0.05, ("zh", "zh-TW"): 0.06}


def own_language(settings: Mapping[str, OwnLanguage], language: str) -> OwnLanguage | None:
    """The settings for questions in `language` ("zh-TW", else "zh"), or None: scored as cross-language."""
    return next((settings[code] for code in with_fallback(language) if code in settings), None)


def pair_offset(pairs: Mapping[tuple[str, str], float], question: str, text: str) -> float | None:
    """The offset for a question in one language meeting text in another (`pairs`, looked up as written and
    without regions: "en-GB" and "de-AT" as "en" and "de"), None for text in the question's own language or
    a pair not listed. "zh-TW" and "zh" are a pair: the same language in two scripts."""
    if question == text:
        return None
    for asked in with_fallback(question):
        for written in with_fallback(text):
            if asked != written and (asked, written) in pairs:
                return pairs[asked, written]
    return None


def _script(character: str) -> str:
    return "wide" if written_without_spaces(character) else "word" if character.isalnum() else ""


def tokens(text: str) -> list[str]:
    """Lexical tokens in any script: "iphone运费多少? PO-123" -> iphone, 运费, 费多, 多少, po, 123."""
    found: list[str] = []
    for script, characters in groupby(text.lower(), key=_script):
        run = "".join(characters)
        if script == "wide":
            found += [run[i:i + 2] for i in range(len(run) - 1)] or [run]
        elif script:
            found.append(run)
    return found


@dataclass(frozen=True)
class OwnChunks:
    """The chunks written in one language, originals and translations, by their numbers in the snapshot."""

    numbers: frozenset[int]
    superseded: frozenset[int]  # originals in another language whose article has a version in this one
    alone: bool                 # no article text in another language is left to compete with this language's
    lexical: bm25s.BM25 | None  # over `ordered`, None if the chunks have no words
    ordered: np.ndarray

    def scores(self, text: str) -> dict[int, float]:
        """Each chunk's BM25 score for `text`; chunks sharing no token with it are left out."""
        query = tokens(text)
        if self.lexical is None or not query:
            return {}
        scores = self.lexical.get_scores(query)
        return {int(self.ordered[i]): float(scores[i]) for i in np.flatnonzero(scores > 0)}


def chunk_languages(chunks: Sequence[Chunk], detect: Callable[[str], str | None]) -> tuple[str, ...]:
    """Each chunk's language as a question meets it ("en" for an article without `lang`): its article's, but
    an example question's own where `detect` tells it. "was kostet der versand" taught to an English article
    from the gaps report is German text, and scores as German text does."""
    return tuple((detect(chunk.question) if chunk.question and not chunk.labelled else None) or chunk.lang or "en"
                 for chunk in chunks)


def own_chunks(chunks: Sequence[Chunk], languages: Sequence[str], searchable: int,
               english: bool) -> dict[str, OwnChunks]:
    """Each language's chunks, by base language ("zh" holds zh and zh-TW; `languages`: each chunk's, as
    `chunk_languages` tells them), with the originals their translations stand in for (chunks[:searchable]
    are originals, the rest translations). English's only with `english`: where an article is in another
    language, since English questions meet the multilingual encoder nowhere else."""
    numbers: dict[str, list[int]] = {}
    for number, language in enumerate(languages):
        if (english or not is_english(language)) and not chunks[number].labelled:
            numbers.setdefault(base_language(language), []).append(number)
    found = {}
    for language, mine in numbers.items():
        translated = {chunks[n].translation_of for n in mine if n >= searchable}
        superseded = frozenset(n for n in range(searchable) if chunks[n].article_id in translated
                               and base_language(languages[n]) != language)
        tokenized = [tokens(chunks[n].embedding_text()) for n in mine]
        lexical = None
        if any(tokenized):
            lexical = bm25s.BM25()
            lexical.index(tokenized, show_progress=False)
        alone = all(base_language(languages[n]) == language for n in range(searchable)
                    if n not in superseded and not chunks[n].question)
        found[language] = OwnChunks(frozenset(mine), superseded, alone, lexical, np.array(mine, dtype=np.int64))
    return found
