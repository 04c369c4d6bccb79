"""Per-message sentiment from a lexicon: VADER's English lexicon plus words a business adds."""

from __future__ import annotations

from collections.abc import Mapping

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


class LexiconSentiment:
    """Scores a message from -1 (very negative) to 1 (very positive).

    VADER knows English words, capitals, exclamation marks and negation. Words of other
    languages, or of a trade, come from the handoff policy with a valence from -4 to 4.
    """

    def __init__(self, extra_words: Mapping[str, float] | None = None) -> None:
        self._analyzer = SentimentIntensityAnalyzer()
        self._analyzer.lexicon.update({word.casefold(): float(v) for word, v in (extra_words or {}).items()})

    def score(self, text: str) -> float:
        return round(float(self._analyzer.polarity_scores(text)["compound"]), 3)
