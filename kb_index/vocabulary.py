"""The knowledge base's own words, to mend a question's typos before it is searched.

Words that are neither in the KB nor common in English (wordfreq's Zipf scale: "warrenty",
"pasword") become the nearest KB word (SymSpell, edit distance 1 for short words, 2 for longer
ones). A real English word the KB lacks ("dog", "router") is kept: it is no typo, it is a topic
the KB does not have.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

import Stemmer
from symspellpy import SymSpell, Verbosity
from wordfreq import zipf_frequency

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
# Words rarer than this in English, and unknown to the KB, are taken for typos.
_TYPO_ZIPF = 2.5
_local = threading.local()


def stemmer() -> Stemmer.Stemmer:
    """This thread's English Snowball stemmer (a PyStemmer stemmer must not be shared between threads)."""
    found: Stemmer.Stemmer | None = getattr(_local, "stemmer", None)
    if found is None:
        found = _local.stemmer = Stemmer.Stemmer("english")
    return found


@lru_cache(maxsize=50_000)
def _zipf(word: str) -> float:
    return float(zipf_frequency(word, "en"))


def words(text: str) -> list[str]:
    """The lower-cased words of a text (letters and inner apostrophes; no digits)."""
    return [w.lower() for w in _WORD.findall(text)]


class KbVocabulary:
    """The words of a snapshot's articles, for mending typos."""

    def __init__(self, texts: Iterable[str]) -> None:
        counts = Counter(w for text in texts for w in words(text))
        self._stems = set(stemmer().stemWords(list(counts)))
        self._spell = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
        for word, count in counts.items():
            if len(word) >= 3:
                self._spell.create_dictionary_entry(word, count)

    def knows(self, word: str) -> bool:
        return stemmer().stemWord(word) in self._stems

    def mend(self, word: str) -> str:
        """The KB word a typo stands for, or the word itself."""
        if len(word) < 4 or self.knows(word) or _zipf(word) >= _TYPO_ZIPF:
            return word
        found = self._spell.lookup(word, Verbosity.TOP, max_edit_distance=1 if len(word) < 6 else 2)
        return found[0].term if found else word

    def correct(self, text: str) -> str:
        """`text` with its typos mended (only words change; the rest stays as written)."""
        return _WORD.sub(lambda m: self._mend_match(m.group(0)), text)

    def _mend_match(self, word: str) -> str:
        mended = self.mend(word.lower())
        return word if mended == word.lower() else mended
