"""Draws docs/align-before-after.png: what `--align` does, as `--preview` shows it.

    PYTHONPATH=src python docs/make_align_figure.py

The reference is the demo's picture (`demo_inputs.make_reference_image`, the figure in its rest pose); its
person's part labels are the same figure's (`demo_inputs.render_labels`), standing in for what DensePose finds
in it. The motion is the demo's dancing figure drawn smaller and off to the side, as a clip filmed from farther
away would be. `align.fit_similarity` fits the transform on the first frame and `preview.compose_preview` draws
the picture, exactly as `magicanimate animate --align --preview` does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from magicanimate_cli.animate.preview import compose_preview, preview_frames
from magicanimate_cli.demo.inputs import _pose, make_reference_image, render_labels
from magicanimate_cli.media.writer import write_image_atomic
from magicanimate_cli.motion.align import fit_similarity
from magicanimate_cli.motion.palette import BACKGROUND, colourise

SIZE = 512
FRAMES = 9
SMALL = 300  # the motion's figure box: 300 px rather than 512, its top-left corner at (20, 170)
CORNER = (20, 170)


def motion_labels(index: int) -> np.ndarray:
    body = render_labels(_pose(2 * math.pi * index / FRAMES, 0.04, 0.9), SMALL, SMALL)
    canvas = np.zeros((SIZE, SIZE), dtype=np.uint8)
    x, y = CORNER
    canvas[y:y + SMALL, x:x + SMALL] = body[:SIZE - y, :SIZE - x]
    return canvas


def main() -> None:
    reference = make_reference_image(SIZE)
    reference_person = render_labels(_pose(0.0, 0.0, 0.0), SIZE, SIZE)
    fit = fit_similarity(reference_person, motion_labels(0))
    frames = {i: colourise(motion_labels(i)) for i in preview_frames(FRAMES)}
    target = Path(__file__).with_name("align-before-after.png")
    write_image_atomic(target, compose_preview(reference, frames, fit.transform, BACKGROUND))
    print(f"wrote {target}: scale {fit.transform.scale:.3f}, shift ({fit.transform.dx:.1f}, {fit.transform.dy:.1f}) "
          f"px from parts {list(fit.parts)}, residual {fit.residual:.2f} px")


if __name__ == "__main__":
    main()
