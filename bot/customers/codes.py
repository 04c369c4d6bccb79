"""Short codes customers read and retype: conversation references and link codes."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import timedelta

# Crockford's base32 without the look-alikes: codes are read aloud and retyped.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LINK_CODE_LENGTH = 6   # 32**6, about 10**9 codes: hopeless to guess within the limit on wrong tries
CODE_LIFETIME = timedelta(minutes=10)
REFERENCE = re.compile(r"\bSB-([0-9A-Z]{5})\b", re.IGNORECASE)
_LOOK_ALIKES = str.maketrans("OIL", "011")
_LINK_COMMAND = re.compile(r"^\s*link[:\s]+([0-9a-z]{3}[ -]?[0-9a-z]{3})\s*[.!]?\s*$", re.IGNORECASE)


def random_code(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_reference() -> str:
    """A short conversation reference such as SB-7F3K2."""
    return "SB-" + random_code(5)


def new_link_code() -> str:
    """Six characters with at least one digit, so "link please" is never taken for a code."""
    while True:
        code = random_code(LINK_CODE_LENGTH)
        if any(c.isdigit() for c in code):
            return code


def normalize_code(text: str) -> str:
    """A code as typed to its canonical form: case, spaces and dashes ignored; O is 0, I and L are 1."""
    return re.sub(r"[\s-]", "", text.upper()).translate(_LOOK_ALIKES)


def link_command(text: str, data: Mapping[str, object]) -> str | None:
    """The code in `LINK K7P2QX` or in a Telegram deep link's `/start K7P2QX`, else None."""
    payload = data.get("start_payload")
    if isinstance(payload, str) and payload:
        # Other deep links (a campaign's, say) are not codes and must not count as wrong ones.
        code = normalize_code(payload)
        return code if len(code) == LINK_CODE_LENGTH and set(code) <= set(ALPHABET) else None
    match = _LINK_COMMAND.match(text)
    if match is None or not any(c.isdigit() for c in match.group(1)):
        return None
    return normalize_code(match.group(1))


def quoted_reference(text: str) -> str | None:
    """The first conversation reference in a message, as stored (upper case), or None."""
    match = REFERENCE.search(text)
    return f"SB-{normalize_code(match.group(1))}" if match else None
