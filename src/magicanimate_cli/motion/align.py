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

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

from .fit import Box
from .palette import PART_COLOURS, PARTS

HEAD_PARTS = (23, 24)
TORSO_PARTS = (1, 2)
CORE_WEIGHT = 4.0
"""Torso and head count this much more than a limb: limbs move between the photo and the frame, the core
does not, so the core decides where the body is and how large."""

EXTENT_WEIGHT = 0.25
"""How much a part's extent counts beside its spread: an extent is off by up to a pixel at each border however
large the part, a spread averages over all its pixels."""

EXTENT_AGREEMENT = 0.08
"""How far a part's extent-to-spread ratio may differ between the pictures for its extent to count."""

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

    def moving(self, frames: Iterable[np.ndarray], background: tuple[int, ...] | int) -> Iterator[np.ndarray]:
        """Every frame moved by this one transform (`people.PeopleAlignment` moves each person by its own)."""
        return (apply_similarity(frame, self, background) for frame in frames)

    def move_frame(self, index: int, frame: np.ndarray, background: tuple[int, ...] | int) -> np.ndarray:
        """Frame `index` of the motion, moved as `moving` moves it."""
        return apply_similarity(frame, self, background)


IDENTITY = Similarity(1.0, 0.0, 0.0)


@dataclass(frozen=True)
class PartAnchor:
    """Where one body part is and how large it is: its centroid, its standard deviation along x and y, and its
    extent (edge to edge, in pixels) along x and y.

    `cut` says the part touches the picture's edge, so part of it may lie outside and its numbers are not its
    own. The spreads include Sheppard's correction (+1/12 px² of variance): a part a few pixels across is drawn
    on a pixel grid, whose rounding otherwise makes small parts look smaller than they are.
    """

    part: int
    pixels: int
    cx: float
    cy: float
    sx: float
    sy: float
    cut: bool
    ex: float = 0.0
    ey: float = 0.0
    pixel_area: float = 1.0  # what one of its pixels covers in the working frame

    @property
    def area(self) -> float:
        """The part's area in working pixels."""
        return self.pixels * self.pixel_area

    def mapped(self, frame: FrameMap) -> PartAnchor:
        """The same part in working pixels (`pixels` stays the count in its own picture)."""
        return PartAnchor(self.part, self.pixels, frame.kx * self.cx + frame.ox, frame.ky * self.cy + frame.oy,
                          frame.kx * self.sx, frame.ky * self.sy, self.cut, frame.kx * self.ex,
                          frame.ky * self.ey, self.pixel_area * frame.area)


@dataclass(frozen=True)
class FrameMap:
    """How a picture's pixel centres land in the working frame: x' = kx·x + ox, y' = ky·y + oy.

    `--fit pad` and `crop` scale both axes alike (to within a pixel of rounding), `stretch` does not; measuring
    a person in its own picture and mapping the numbers keeps the precision of the larger picture.
    """

    kx: float = 1.0
    ky: float = 1.0
    ox: float = 0.0
    oy: float = 0.0

    @classmethod
    def onto(cls, width: int, height: int, box: Box) -> FrameMap:
        """A width×height picture resized into `box` of the working frame (its pixel edges onto the box's)."""
        kx, ky = box.width / width, box.height / height
        return cls(kx, ky, 0.5 * kx + box.left - 0.5, 0.5 * ky + box.top - 0.5)

    @property
    def area(self) -> float:
        return self.kx * self.ky


@dataclass(frozen=True)
class Extent:
    """A person's box in working pixels as floats: its centre (pixel-centre units) and its size (edge to edge)."""

    cx: float
    cy: float
    width: float
    height: float

    @classmethod
    def of(cls, box: Box, frame: FrameMap = FrameMap()) -> Extent:
        return cls(frame.kx * (box.left + (box.width - 1) / 2) + frame.ox,
                   frame.ky * (box.top + (box.height - 1) / 2) + frame.oy, frame.kx * box.width,
                   frame.ky * box.height)

    def box(self) -> Box:
        """The nearest whole-pixel box."""
        left, top = round(self.cx + 0.5 - self.width / 2), round(self.cy + 0.5 - self.height / 2)
        right, bottom = round(self.cx + 0.5 + self.width / 2), round(self.cy + 0.5 + self.height / 2)
        return Box(left, top, max(1, right - left), max(1, bottom - top))


@dataclass(frozen=True)
class Measured:
    """One person as the fit sees it: part anchors and box in working pixels, and the area of the body there."""

    anchors: dict[int, PartAnchor]
    extent: Extent
    area: float


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
    """The anchor of every part with at least MIN_PART_PIXELS pixels, in the map's own pixels."""
    height, width = labels.shape
    anchors: dict[int, PartAnchor] = {}
    for part in range(1, PARTS + 1):
        ys, xs = np.nonzero(labels == part)
        if ys.size < MIN_PART_PIXELS:
            continue
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        cut = bool(x0 == 0 or y0 == 0 or x1 == width - 1 or y1 == height - 1)
        anchors[part] = PartAnchor(part, int(ys.size), float(xs.mean()), float(ys.mean()),
                                   float(np.sqrt(xs.var() + 1 / 12)), float(np.sqrt(ys.var() + 1 / 12)), cut,
                                   float(x1 - x0 + 1), float(y1 - y0 + 1))
    return anchors


def part_weight(part: int) -> float:
    return CORE_WEIGHT if part in HEAD_PARTS or part in TORSO_PARTS else 1.0


def measure(labels: np.ndarray, frame: FrameMap = FrameMap()) -> Measured | None:
    """A person's numbers from its (H, W) label map in its own picture, expressed in the working frame through
    `frame`; None when the map shows nobody. The picture's edges are where the person was seen: a part that
    touches them is cut, whatever lies beyond (the letterbox of `--fit pad`, say) in the working frame."""
    box = person_box(labels)
    if box is None:
        return None
    anchors = {p: a.mapped(frame) for p, a in part_anchors(labels).items()}
    return Measured(anchors, Extent.of(box, frame), float(np.count_nonzero(labels)) * frame.area)


def fit_similarity(reference: np.ndarray, motion: np.ndarray) -> AlignmentFit:
    """The similarity that maps the motion's person onto the reference's, from two (H, W) label maps of the
    same frame (see `fit_measured`). Both maps must show a person (see `person_box`)."""
    ref, mot = measure(reference), measure(motion)
    if ref is None or mot is None:
        raise ValueError("both label maps must show a person")
    return fit_measured(ref, mot)


def fit_measured(reference: Measured, motion: Measured) -> AlignmentFit:
    """The similarity that maps the motion's person onto the reference's, both measured in working pixels.

    Weighted least squares over the parts visible and uncut in both: each part asks that its centroid land on
    the reference part's centroid, and each torso and head part (every part, when neither is shared) that its
    spread (standard deviation in x and in y) and its extent (edge to edge) scale to the reference part's; each
    is weighted by the part's weight and the square root of its smaller area. Spreads and extents err in
    opposite ways on a small, coarsely drawn part (a spread shrinks with the pixels a border loses, an extent
    grows by the pixel a border gains), so together they hold the scale of a small person. Using the parts
    rather than the size of the boxes is what keeps a reference cut at the waist or knees from shrinking the
    motion to fit: the scale comes from what both show. When the shared parts are too few (less than
    MIN_SHARED_SHARE of the reference person), the person boxes decide: heights give the scale, centres the
    shift.
    """
    ref_anchors, motion_anchors = reference.anchors, motion.anchors
    shared = [p for p in sorted(ref_anchors) if p in motion_anchors
              and not ref_anchors[p].cut and not motion_anchors[p].cut]
    shared_area = sum(ref_anchors[p].area for p in shared)
    if not shared or shared_area < MIN_SHARED_SHARE * reference.area:
        return _fit_boxes(reference.extent, motion.extent)
    # a limb's spread changes as it turns (an arm hanging down vs held out); the core's does not, so when the
    # core is shared only its spreads measure size, and the limbs contribute where they are
    spread_parts = [p for p in shared if part_weight(p) > 1.0] or shared
    rows, targets, weights = [], [], []
    for part in shared:
        r, m = ref_anchors[part], motion_anchors[part]
        weight = part_weight(part) * np.sqrt(min(r.area, m.area))
        rows += [(m.cx, 1.0, 0.0), (m.cy, 0.0, 1.0)]
        targets += [r.cx, r.cy]
        weights += [weight] * 2
        if part in spread_parts:
            rows += [(m.sx, 0.0, 0.0), (m.sy, 0.0, 0.0)]
            targets += [r.sx, r.sy]
            weights += [weight] * 2
            for r_extent, m_extent, r_spread, m_spread in ((r.ex, m.ex, r.sx, m.sx), (r.ey, m.ey, r.sy, m.sy)):
                if _same_shape(r_extent / r_spread, m_extent / m_spread):
                    rows.append((m_extent, 0.0, 0.0))
                    targets.append(r_extent)
                    weights.append(EXTENT_WEIGHT * weight)
    a, b, w = np.array(rows), np.array(targets), np.sqrt(np.array(weights))
    solution, *_ = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)
    scale, dx, dy = (float(v) for v in solution)
    if scale <= 0:  # degenerate anchors (should not happen with real parts): the boxes are the safer answer
        return _fit_boxes(reference.extent, motion.extent)
    errors = a @ solution - b
    residual = float(np.sqrt(np.sum(np.square(w) * errors ** 2) / np.sum(np.square(w))))
    return AlignmentFit(Similarity(scale, dx, dy), "parts", tuple(shared), residual)


def _same_shape(reference_ratio: float, motion_ratio: float) -> bool:
    """Whether a part's extent-to-spread ratio is alike in both pictures, as a similarity keeps it.

    A part partly hidden (by a limb drawn over it, or cut off without touching the edge) or with a stray pixel
    of its label far away changes its extent much more than its spread; such an extent is left out.
    """
    return reference_ratio > 0 and motion_ratio > 0 and abs(reference_ratio / motion_ratio - 1) <= EXTENT_AGREEMENT


def _fit_boxes(reference: Extent, motion: Extent) -> AlignmentFit:
    """Scale by the ratio of box heights, shift box centre onto box centre."""
    scale = reference.height / motion.height
    transform = Similarity(scale, reference.cx - scale * motion.cx, reference.cy - scale * motion.cy)
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
