"""Reading a customer's rating of a closed conversation out of their message."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

# How long after the rating question a rating is still taken as its answer. A bare "3" as the
# first words of a new conversation means nothing else, so a late tap on an old button counts.
CSAT_WINDOW = timedelta(days=7)

# "4", "4/5", "4 of 5", "4 stars", then optionally a separator and a comment: "4 - quick, but ...".
# A digit followed by plain words ("2 pairs of boots ...") is a new message, not a rating.
_RATING = re.compile(
    r"\s*(?P<score>[1-5])\s*(?:/\s*5|(?:out\s+)?of\s+5|stars?|\u2b50+)?\s*"
    r"(?:(?:[-\u2013\u2014:,;!)]|\.(?!\d))\s*(?P<comment>.*))?\Z",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class Rating:
    score: int            # 1 (not at all happy) to 5 (very happy)
    comment: str | None   # what the customer wrote after the number, kept as feedback


def read_rating(text: str) -> Rating | None:
    """The rating in a message such as "4" or "4 - quick but my parcel is still missing", else None."""
    match = _RATING.match(text)
    if match is None:
        return None
    return Rating(int(match.group("score")), (match.group("comment") or "").strip() or None)
