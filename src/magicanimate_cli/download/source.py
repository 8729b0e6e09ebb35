"""One hub repository at one revision: what settings ask for, what selection lists and what a plan records."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One hub repository at one revision, and the folder of the layout it fills."""

    key: str
    repo_id: str
    revision: str
    subdir: str

    @property
    def label(self) -> str:
        return f"{self.repo_id}@{self.revision}"
