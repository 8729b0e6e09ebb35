"""magicanimate-cli: MagicAnimate human image animation from the command line and from Python."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Animator", "AnimationResult", "__version__"]


def __getattr__(name: str):
    # The engine pulls in torch and diffusers; load it only when asked for, so `--help` stays fast.
    if name in ("Animator", "AnimationResult"):
        from .engine import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
