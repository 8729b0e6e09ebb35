"""Where the tool keeps its weights unless told otherwise (`$MAGICANIMATE_HOME`)."""

from __future__ import annotations

import os
from pathlib import Path


def default_weights_dir() -> Path:
    """`$MAGICANIMATE_HOME`, else `~/.cache/magicanimate` — where download-weights puts the release."""
    home = os.environ.get("MAGICANIMATE_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "magicanimate"
