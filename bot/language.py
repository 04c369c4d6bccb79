"""The language a customer writes in, judged from the message itself.

py3langid (a naive Bayes model over byte n-grams, shipped in the package) scores the message
against the languages the business serves; its probabilities are calibrated for the text's
length. A message plainly in a language the business does not list ("배송비가 얼마예요?",
"¿Cuánto cuesta el envío?") is named as that language rather than as the nearest one listed, so
a Korean customer is not answered in Chinese nor a Spanish one searched as English. Chinese is
told apart as simplified (`zh`) or traditional (`zh-TW`) by its characters (hanzidentifier).
Codes and order numbers are left out of the judgement, and a message too short or too unsure to
judge ("ok", "PO-2610427", "LINK K7P2QX", "👍") has no language, so it never switches the one a
conversation is in.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence

import hanzidentifier
from babel import Locale
from py3langid.langid import MODEL_FILE, LanguageIdentifier

DEFAULT_LANGUAGES = ("en", "de", "bg", "zh", "zh-TW", "th")
# Order numbers, link codes and references ("PO-2610427", "K7P2QX", "SB-7F3K2"): Latin letters and
# digits together are no word of any language, yet their letters can sway the guess.
_CODE = re.compile(r"[A-Za-z0-9-]*[0-9][A-Za-z0-9-]*")
# Varieties py3langid tells apart that a business names by their language: Cantonese and Wu written in Chinese
# characters (traditional Chinese questions read as Cantonese at 0.7 to 0.8), Nigerian Pidgin in English words.
_VARIETIES = {"yue": "zh", "wuu": "zh", "pcm": "en"}
_NO_LANGUAGE = "zxx"


def base_language(code: str) -> str:
    """A BCP 47 code without its region or script: "zh" for "zh-TW", "en" for "en-GB"."""
    return code.split("-")[0].lower()


def is_english(code: str | None) -> bool:
    """Whether a language code is English (None, unknown, is not)."""
    return bool(code) and base_language(code or "") == "en"


ENGLISH = Locale.parse("en_GB")  # how English replies write a day and time: "Monday 08:00"


def babel_locale(language: str | None) -> Locale:
    """Babel's locale for a language code ("zh-TW"); English, or a code Babel does not know, is en_GB."""
    try:
        return Locale.parse(language, sep="-") if language and not language.startswith("en") else ENGLISH
    except (ValueError, LookupError):
        return ENGLISH


def with_fallback(code: str) -> tuple[str, ...]:
    """The versions to look for, in order, for a customer writing in `code`: "de-AT", then "de"."""
    return tuple(dict.fromkeys((code, code.split("-")[0])))


class LanguageDetector:
    """Names a message's language among `languages` (BCP 47 codes as the business uses them), or None."""

    def __init__(self, languages: Sequence[str] = DEFAULT_LANGUAGES, min_confidence: float = 0.8,
                 min_letters: int = 4, others_confidence: float = 0.8) -> None:
        """`others_confidence`: how sure py3langid must be, among all its languages, to name one not listed (0.8:
        no question of the sample shop's English, German, Bulgarian, Chinese or Thai sets is named another at
        0.8, and 44 of its 48 French ones are named French: docs/multilingual.md)."""
        self.languages = tuple(languages)
        bases = sorted({base_language(code) for code in self.languages})
        self._everyone = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        unknown = set(bases) - set(self._everyone.nb_classes)
        if unknown:
            raise ValueError(f"no language model for {', '.join(sorted(unknown))}")
        self._bases = frozenset(bases)
        self._single = bases[0] if len(bases) == 1 else None
        self._identifier = copy.copy(self._everyone)  # the same model, its own choice of languages
        if self._single is None:
            self._identifier.set_languages(bases)
        self._others_confidence = others_confidence
        self._min_confidence = min_confidence
        self._min_letters = min_letters
        self._traditional = "zh-TW" in self.languages

    def detect(self, text: str) -> str | None:
        """The language of `text`, or None if it is too short or too unsure to tell, or a button's payload
        ("/kb_helpful", "/greet": Rasa's form of an intent, in no language)."""
        if text.lstrip().startswith("/"):
            return None
        text = _CODE.sub(" ", text)
        letters = sum(1 for character in text if character.isalpha())
        # One Chinese or Thai character carries about as much as a word of a Latin or Cyrillic script.
        wide = sum(1 for character in text if written_without_spaces(character))
        if letters + 2 * wide < self._min_letters:
            return None
        if self._single is not None:
            language = self._single  # one language served: nothing is matched across languages
        elif (other := self._unlisted(text)) is not None:
            return other
        else:
            language, confidence = self._identifier.classify(text)
            if confidence < self._min_confidence:
                return None
        if language == "zh" and self._traditional and _traditional(text):
            return "zh-TW"
        return language

    def _unlisted(self, text: str) -> str | None:
        """The language of `text` where it is none the business lists and py3langid, among all its languages, is
        sure of it."""
        language, confidence = self._everyone.classify(text)
        language = _VARIETIES.get(language, language)
        if language in self._bases or language == _NO_LANGUAGE or confidence < self._others_confidence:
            return None
        return str(language)


def written_without_spaces(character: str) -> bool:
    """A Chinese or Thai character: scripts whose words are not separated by spaces."""
    code = ord(character)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x0E00 <= code <= 0x0E7F


def _traditional(text: str) -> bool:
    """Whether Chinese text is written in traditional characters (text that could be either is not)."""
    return bool(hanzidentifier.identify(text) == hanzidentifier.TRADITIONAL)
