"""Aligning a DensePose motion to the reference person: one similarity (uniform scale + shift) per run.

The ControlNet draws the body where the render puts it and the appearance encoder squeezes the reference into
that silhouette, so a motion whose person is larger, smaller or elsewhere than the reference person distorts the
result. These functions read the person of a render back from its palette, compare it with the reference
person part by part, and move every motion frame by one transform. Only scale and translation are fitted: no
rotation and no per-axis stretch, so the motion keeps its own proportions and movement.

Coordinates are pixel centres in (x, y) = (column, row) index units; a transform maps a motion pixel (u, v) to
(scale·u + dx, scale·v + dy) in the working frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .fit import Box
from .palette import PART_COLOURS, PARTS

HEAD_PARTS = (23, 24)
TORSO_PARTS = (1, 2)
CORE_WEIGHT = 4.0
"""Torso and head count this much more than a limb: limbs move between the photo and the frame, the core
does not, so the core decides where the body is and how large."""

MIN_PART_PIXELS = 12
"""A part smaller than this in either picture is too noisy to anchor on."""

MIN_SHARED_SHARE = 0.2
"""The shared, uncut parts must cover at least this share of the reference person's pixels; below it (e.g. a
back view against a front view, or a single hand) the fit falls back to the person boxes."""


@dataclass(frozen=True)
class Similarity:
    """(u, v) → (scale·u + dx, scale·v + dy), in working pixels."""

    scale: float
    dx: float
    dy: float

    def to_dict(self) -> dict[str, float]:
        return {"scale": round(self.scale, 6), "dx": round(self.dx, 3), "dy": round(self.dy, 3)}


IDENTITY = Similarity(1.0, 0.0, 0.0)


@dataclass(frozen=True)
class PartAnchor:
    """Where one body part is and how far it spreads: its centroid and its standard deviation along x and y.

    `cut` says the part touches the frame's edge, so part of it may lie outside and its numbers are not its own.
    """

    part: int
    pixels: int
    cx: float
    cy: float
    sx: float
    sy: float
    cut: bool


@dataclass(frozen=True)
class AlignmentFit:
    """The fitted transform, how it was found ("parts" or "box"), the parts used and the fit's RMS residual."""

    transform: Similarity
    method: str
    parts: tuple[int, ...]
    residual: float

    def to_dict(self) -> dict:
        return {"transform": self.transform.to_dict(), "method": self.method, "parts": list(self.parts),
                "residual_px": round(self.residual, 3)}


LUMA_WEIGHT = 4.0
"""How much more a luma difference counts than a chroma one when reading a label back: viridis rises steadily
in lightness, so luma alone tells the parts apart, and video coding keeps luma at full resolution while it
halves chroma (4:2:0) and smears it across part borders."""

_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                  dtype=np.float32)


def decode_labels(frame: np.ndarray) -> np.ndarray:
    """(H, W) uint8 part labels of an RGB render: each pixel's nearest of the 25 palette colours.

    Nearest rather than exact, so that a render that went through lossy video coding (colours moved by a few
    levels, as `densepose.CODING_NOISE` describes) still reads back as its parts, and a coded background such
    as (65, 0, 81) reads as background. Distances are taken in YCbCr with luma weighted LUMA_WEIGHT times,
    so the chroma that coding spreads over a part's border does not relabel it.
    """
    weights = np.sqrt(np.array([LUMA_WEIGHT, 1.0, 1.0], dtype=np.float32))
    pixels = (np.asarray(frame, dtype=np.float32) @ _YCBCR.T) * weights
    palette = (PART_COLOURS.astype(np.float32) @ _YCBCR.T) * weights
    best = np.full(pixels.shape[:2], np.inf, dtype=np.float32)
    labels = np.zeros(pixels.shape[:2], dtype=np.uint8)
    for label, colour in enumerate(palette):
        distance = ((pixels - colour) ** 2).sum(axis=2)
        closer = distance < best
        best[closer] = distance[closer]
        labels[closer] = label
    return labels


def majority_filter(labels: np.ndarray) -> np.ndarray:
    """Each pixel takes the most common label of its 3×3 neighbourhood (its own label wins ties).

    Lossy coding smears a part's border into colours that read back as other parts: H.264 draws a 1-2 pixel
    ring of labels 1-4 around a part of label 5 on the background, since the dark end of viridis runs through
    them. Such rings would shrink the part and bias its anchor; a body part is never that thin in a render, so
    the vote removes them and leaves the parts' areas as drawn.
    """
    labels = np.asarray(labels)
    height, width = labels.shape
    padded = np.pad(labels, 1, mode="edge")
    present = np.unique(labels)
    counts = np.zeros((len(present), height, width), dtype=np.float32)
    for slot, label in enumerate(present):
        mine = padded == label
        for dy in range(3):
            for dx in range(3):
                counts[slot] += mine[dy:dy + height, dx:dx + width]
        counts[slot] += 0.5 * (labels == label)
    return present[np.argmax(counts, axis=0)].astype(np.uint8)


def person_box(labels: np.ndarray) -> Box | None:
    """The tight box around every body pixel (label > 0), or None when there is none."""
    rows = np.flatnonzero(labels.any(axis=1))
    cols = np.flatnonzero(labels.any(axis=0))
    if rows.size == 0:
        return None
    return Box(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def part_anchors(labels: np.ndarray) -> dict[int, PartAnchor]:
    """The anchor of every part with at least MIN_PART_PIXELS pixels."""
    height, width = labels.shape
    anchors: dict[int, PartAnchor] = {}
    for part in range(1, PARTS + 1):
        ys, xs = np.nonzero(labels == part)
        if ys.size < MIN_PART_PIXELS:
            continue
        cut = bool(xs.min() == 0 or ys.min() == 0 or xs.max() == width - 1 or ys.max() == height - 1)
        anchors[part] = PartAnchor(part, int(ys.size), float(xs.mean()), float(ys.mean()), float(xs.std()),
                                   float(ys.std()), cut)
    return anchors


def part_weight(part: int) -> float:
    return CORE_WEIGHT if part in HEAD_PARTS or part in TORSO_PARTS else 1.0


def fit_similarity(reference: np.ndarray, motion: np.ndarray) -> AlignmentFit:
    """The similarity that maps the motion's person onto the reference's, from two (H, W) label maps.

    Weighted least squares over the parts visible and uncut in both: each part asks that its centroid land on
    the reference part's centroid, and each torso and head part (every part, when neither is shared) that its
    spread (standard deviation in x and in y) scale to the reference part's; each is weighted by the part's
    weight and the square root of its smaller area. Using the spreads of the
    parts rather than the size of the boxes is what keeps a reference cut at the waist or knees from shrinking
    the motion to fit: the scale comes from what both show. When the shared parts are too few (less than
    MIN_SHARED_SHARE of the reference person), the person boxes decide: heights give the scale, centres the
    shift. Both maps must show a person (see `person_box`).
    """
    ref_box, motion_box = person_box(reference), person_box(motion)
    if ref_box is None or motion_box is None:
        raise ValueError("both label maps must show a person")
    ref_anchors, motion_anchors = part_anchors(reference), part_anchors(motion)
    shared = [p for p in sorted(ref_anchors) if p in motion_anchors
              and not ref_anchors[p].cut and not motion_anchors[p].cut]
    shared_pixels = sum(ref_anchors[p].pixels for p in shared)
    if not shared or shared_pixels < MIN_SHARED_SHARE * np.count_nonzero(reference):
        return _fit_boxes(ref_box, motion_box)
    # a limb's spread changes as it turns (an arm hanging down vs held out); the core's does not, so when the
    # core is shared only its spreads measure size, and the limbs contribute where they are
    spread_parts = [p for p in shared if part_weight(p) > 1.0] or shared
    rows, targets, weights = [], [], []
    for part in shared:
        r, m = ref_anchors[part], motion_anchors[part]
        weight = part_weight(part) * np.sqrt(min(r.pixels, m.pixels))
        rows += [(m.cx, 1.0, 0.0), (m.cy, 0.0, 1.0)]
        targets += [r.cx, r.cy]
        weights += [weight] * 2
        if part in spread_parts:
            rows += [(m.sx, 0.0, 0.0), (m.sy, 0.0, 0.0)]
            targets += [r.sx, r.sy]
            weights += [weight] * 2
    a, b, w = np.array(rows), np.array(targets), np.sqrt(np.array(weights))
    solution, *_ = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)
    scale, dx, dy = (float(v) for v in solution)
    if scale <= 0:  # degenerate anchors (should not happen with real parts): the boxes are the safer answer
        return _fit_boxes(ref_box, motion_box)
    errors = a @ solution - b
    residual = float(np.sqrt(np.sum(np.square(w) * errors ** 2) / np.sum(np.square(w))))
    return AlignmentFit(Similarity(scale, dx, dy), "parts", tuple(shared), residual)


def _fit_boxes(reference: Box, motion: Box) -> AlignmentFit:
    """Scale by the ratio of box heights, shift box centre onto box centre."""
    scale = reference.height / motion.height
    ref_cx, ref_cy = reference.left + (reference.width - 1) / 2, reference.top + (reference.height - 1) / 2
    mot_cx, mot_cy = motion.left + (motion.width - 1) / 2, motion.top + (motion.height - 1) / 2
    transform = Similarity(scale, ref_cx - scale * mot_cx, ref_cy - scale * mot_cy)
    residual = abs(reference.width - scale * motion.width) / 2  # what the one free dimension leaves unmatched
    return AlignmentFit(transform, "box", (), float(residual))


def apply_similarity(frame: np.ndarray, transform: Similarity, background: tuple[int, ...] | int = 0) -> np.ndarray:
    """Move one (H, W) label map or (H, W, 3) render by `transform`, keeping its shape.

    Nearest neighbour: each output pixel copies the motion pixel it comes from, so labels stay labels and a
    render keeps only its own colours. Output pixels that come from outside the frame get `background`; what
    the transform moves outside is cut.
    """
    frame = np.asarray(frame)
    height, width = frame.shape[:2]
    u = np.floor((np.arange(width) - transform.dx) / transform.scale + 0.5).astype(np.int64)
    v = np.floor((np.arange(height) - transform.dy) / transform.scale + 0.5).astype(np.int64)
    inside_u, inside_v = (u >= 0) & (u < width), (v >= 0) & (v < height)
    out = np.empty_like(frame)
    out[...] = background
    rows, cols = np.flatnonzero(inside_v), np.flatnonzero(inside_u)
    out[np.ix_(rows, cols)] = frame[np.ix_(v[rows], u[cols])]
    return out


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = max(0, min(a.right, b.right) - max(a.left, b.left))
    h = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


def box_record(box: Box | None) -> dict | None:
    """A box as sidecar data (left, top, width, height in working pixels)."""
    return None if box is None else asdict(box)
