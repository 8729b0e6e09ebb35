"""The precision table of docs/alignment.md: `--align`'s fit over the grid of tests/align_grid.py (a runner-like
figure at 0.4× to 1.5× in 512² photos, fitted to its 512² render at working sizes 128, 256 and 512), measured
at each picture's own resolution (what `--align` does) and, for comparison, in the working frame.

    python benchmarks/align_precision.py

Prints, per working size and way of measuring, the worst and median relative scale error and the worst and
median box IoU of the aligned motion person with the reference person.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from align_grid import (SCALES, WORKING, cases, fit_at_own_resolution, fit_in_working_frame,  # noqa: E402
                        motion_render, outcome)


def main() -> None:
    motion = motion_render()
    print(f"scales {SCALES}; 3 places each")
    print("working  measured in        scale error worst / median   box IoU worst / median")
    for work in WORKING:
        grid = cases(work)
        for name, fit in (("own resolution", fit_at_own_resolution), ("working frame", fit_in_working_frame)):
            results = np.array([outcome(case, motion, fit(case, motion)) for case in grid])
            errors, ious = results[:, 0], results[:, 1]
            print(f"{work:>4}²    {name:<16}  {errors.max():6.1%} / {np.median(errors):5.1%}"
                  f"              {ious.min():.3f} / {np.median(ious):.3f}")


if __name__ == "__main__":
    main()
