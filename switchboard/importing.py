"""Reading customer records to import: CSV with a header row, or a JSON list of objects."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.errors import InvalidMessage, SwitchboardError
from connectors.twilio import e164


def read_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, record) for each customer in the file; `where` is its line (CSV) or index (JSON)."""
    if path.suffix.lower() == ".json":
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SwitchboardError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(items, list):
            raise SwitchboardError(f"{path}: expected a JSON list of customer objects")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise SwitchboardError(f"{path}: item {index} is not an object")
            yield f"item {index}", item
    elif path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                # Empty cells are absent fields, not empty attributes.
                yield f"line {reader.line_num}", {k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()}
    else:
        raise SwitchboardError(f"{path}: import a .csv or a .json file")


def clean_record(record: dict[str, Any]) -> dict[str, Any]:
    """Check one record: it needs an `email` or a `phone` (international, normalised to E.164)."""
    email = record.get("email")
    phone = record.get("phone")
    if not email and not phone:
        raise InvalidMessage("needs an email or a phone number to find the customer by")
    if email is not None and (not isinstance(email, str) or "@" not in email.strip("@")):
        raise InvalidMessage(f"{email!r} is not an email address")
    cleaned = dict(record)
    if phone:
        cleaned["phone"] = e164(str(phone), "phone")
    return cleaned
