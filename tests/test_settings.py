"""Settings come from SWITCHBOARD_* variables, read once, typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import SwitchboardError
from switchboard.settings import Settings


def test_defaults_are_the_embedded_setup() -> None:
    settings = Settings.from_env({})
    assert settings.store_url == "sqlite:///var/switchboard.db"
    assert settings.kb_dir == Path("data/kb")


def test_variables_are_parsed_to_their_types() -> None:
    settings = Settings.from_env({
        "SWITCHBOARD_STORE_URL": "sqlite:////srv/sb.db",
        "SWITCHBOARD_KB_DIR": "/srv/kb",
        "SWITCHBOARD_KB_MIN_SCORE": "0.5",
        "SWITCHBOARD_MAX_TEXT_LENGTH": "100",
        "UNRELATED": "x",
    })
    assert settings.store_url == "sqlite:////srv/sb.db"
    assert settings.kb_dir == Path("/srv/kb")
    assert settings.kb_min_score == 0.5
    assert settings.max_text_length == 100


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(SwitchboardError, match="SWITCHBOARD_MAX_TEXT_LENGTH"):
        Settings.from_env({"SWITCHBOARD_MAX_TEXT_LENGTH": "lots"})
