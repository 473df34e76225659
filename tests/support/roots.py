"""Making a gc root old: its record's refresh time set back, as if its last sync or lock were that long ago."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["DAY", "age_root"]

DAY = 86400


def age_root(entry: Path, seconds: int) -> None:
    """Set the ``refreshed`` of the root at ``entry`` back by ``seconds``, written in place (its owner and mode stay)."""
    doc = json.loads(entry.read_bytes())
    doc["refreshed"] -= seconds
    entry.write_text(json.dumps(doc) + "\n")
