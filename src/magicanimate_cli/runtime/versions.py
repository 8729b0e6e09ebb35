"""The versions a record names: what decoded, computed and encoded the frames of a run."""

from __future__ import annotations

import platform

import numpy as np


def runtime_versions() -> dict[str, str]:
    """The versions every sidecar records: what decoded, computed and encoded the frames."""
    import av
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "av": av.__version__}
