"""What each channel can show, as data, and the one pure function that fits a reply to it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.messages import Button


class ButtonStyle(StrEnum):
    INLINE = "inline"      # the channel draws buttons (web chat, Telegram inline keyboards)
    NUMBERED = "numbered"  # listed as "1) ...", chosen by replying with the number (SMS, WhatsApp)


@dataclass(frozen=True)
class Capabilities:
    max_length: int                  # characters in one message
    buttons: ButtonStyle
    markdown: bool = False
    media: bool = False
    max_segments: int | None = None  # SMS: the most segments one message may take
    max_buttons: int | None = None   # more than this many buttons are written as numbered options
    feedback: bool = False           # KB answers ask "did this help?" with one-tap buttons
    # Carrier keywords (matched whole, any case): no more messages, messages again, help.
    opt_out_keywords: frozenset[str] = frozenset()
    opt_in_keywords: frozenset[str] = frozenset()
    help_keywords: frozenset[str] = frozenset()


CAPABILITIES: dict[str, Capabilities] = {
    "web": Capabilities(max_length=4000, buttons=ButtonStyle.INLINE, markdown=False, media=True, feedback=True),
    "rest": Capabilities(max_length=4000, buttons=ButtonStyle.INLINE),
    "telegram": Capabilities(max_length=4096, buttons=ButtonStyle.INLINE, media=True, feedback=True),
    "whatsapp": Capabilities(max_length=1600, buttons=ButtonStyle.NUMBERED, media=True),
    # Quick replies: at most 13 a message.
    "messenger": Capabilities(max_length=2000, buttons=ButtonStyle.INLINE, media=True, feedback=True, max_buttons=13),
    "instagram": Capabilities(max_length=1000, buttons=ButtonStyle.INLINE, media=True, feedback=True, max_buttons=13),
    # Mail takes long replies and draws no buttons: options are numbered, answered with the number.
    "email": Capabilities(max_length=50_000, buttons=ButtonStyle.NUMBERED, media=True),
    # Twilio takes SMS bodies up to 1,600 characters; 4 segments keeps one reply affordable.
    "sms": Capabilities(max_length=1600, buttons=ButtonStyle.NUMBERED, max_segments=4,
                        opt_out_keywords=frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"}),
                        opt_in_keywords=frozenset({"start", "yes", "unstop"}),
                        help_keywords=frozenset({"help", "info"})),
}

# The GSM 03.38 alphabet: texts made only of these travel 160 characters to a segment.
_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM7_EXTENDED = set("^{}\\[~]|€\f")  # two septets each
# A sentence or line with the whitespace after it.
_SENTENCE = re.compile(r"[^\n.!?]*(?:[.!?]+(?=\s|$)|\n|$)\s*|[^\s]+\s*")
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class FittedReply:
    parts: tuple[str, ...]         # messages to send, in order
    buttons: tuple[Button, ...]    # buttons the channel draws; empty when they were written into the text


def sms_segments(text: str) -> int:
    """How many SMS segments a text takes: GSM-7 160 (153 when split), else UCS-2 70 (67)."""
    if all(c in _GSM7 or c in _GSM7_EXTENDED for c in text):
        septets = sum(2 if c in _GSM7_EXTENDED else 1 for c in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def numbered_options(buttons: tuple[Button, ...]) -> str:
    return "\n".join(f"{number}) {button.title}" for number, button in enumerate(buttons, 1))


def fit_reply(text: str, buttons: tuple[Button, ...], capabilities: Capabilities) -> FittedReply:
    """Fit a reply to a channel: buttons the channel cannot draw become numbered options, and a text
    too long for one message is split on sentence boundaries (on words, if one sentence is too long)."""
    drawn = buttons
    too_many = capabilities.max_buttons is not None and len(buttons) > capabilities.max_buttons
    if buttons and (capabilities.buttons == ButtonStyle.NUMBERED or too_many):
        # Buttons that are their own numbers (a 1-5 rating) need no list: the text asks for the number.
        if [b.title for b in buttons] != [str(n) for n in range(1, len(buttons) + 1)]:
            text = f"{text}\n\n{numbered_options(buttons)}\nReply with a number."
        drawn = ()
    return FittedReply(tuple(_split(text.strip(), lambda part: _fits(part, capabilities))), drawn)


def _fits(text: str, capabilities: Capabilities) -> bool:
    if len(text) > capabilities.max_length:
        return False
    return capabilities.max_segments is None or sms_segments(text) <= capabilities.max_segments


def _split(text: str, fits: Callable[[str], bool]) -> list[str]:
    if fits(text):
        return [text] if text else []
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, fits):  # each piece keeps the whitespace after it
        if fits((current + piece).strip()):
            current += piece
            continue
        if current.strip():
            parts.append(current.strip())
        current = piece
    if current.strip():
        parts.append(current.strip())
    return parts


def _pieces(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Sentences (and lines); a sentence too long on its own is cut into words, a word into characters."""
    pieces: list[str] = []
    for sentence in _SENTENCE.findall(text):
        if fits(sentence.strip()):
            pieces.append(sentence)
            continue
        for word in _WORD.findall(sentence):
            while not fits(word.strip()):
                cut = _longest_fitting_prefix(word, fits)
                pieces.append(word[:cut])
                word = word[cut:]
            pieces.append(word)
    return pieces


def _longest_fitting_prefix(word: str, fits: Callable[[str], bool]) -> int:
    low, high = 1, len(word) - 1  # a one-character prefix always fits
    while low < high:
        middle = (low + high + 1) // 2
        if fits(word[:middle]):
            low = middle
        else:
            high = middle - 1
    return low
