"""Several people in a DensePose render: who is where, who is who across frames, and who pairs with whom.

A render in MagicAnimate's format has no instance channel: every person is drawn in the same palette on the same
background. These pure functions find the people from the labels alone. A person is a connected body region,
with regions a few pixels apart joined (a hand that a coding artefact or a thin wrist cut from its arm still
belongs to it) and regions without any torso or head (a lone foot, an arm cut off by another dancer) given to
the nearest region that has them. Across frames a person keeps its identity while its box overlaps where it
was. Pairing with the reference's people goes by place, left to right, unless the user says otherwise.

Coordinates are pixel indices (x = column, y = row), as in align.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image

from .align import (HEAD_PARTS, TORSO_PARTS, AlignmentFit, Measured, Similarity, apply_similarity, box_iou,
                    decode_labels, fit_measured)
from .fit import Box, Fit, fit_motion_frame

GAP_SHARE = 0.012
"""Body regions closer than this share of the frame's larger side (6 px at 512², at least 1 px) are one
region: wide enough to bridge a wrist or an ankle lost to coding or resampling, narrow enough to keep two
dancers apart who do not touch."""

MIN_CORE_PIXELS = 8
CORE_SHARE = 0.05
"""A region is a person when at least this share of it (and MIN_CORE_PIXELS) is torso or head: the ring of dark
labels (1 to 4, the torso's among them) that video coding draws around any part is a smaller share."""

PERSON_SHARE = 0.1
"""A region this large beside the largest is a person even without torso or head (a dancer whose render shows
only limbs, a child beside an adult); smaller regions without them are fragments: a hand or a foot is about 2%
of a body, a forearm with its hand about 4%."""

MATCH_IOU = 0.2
"""Box overlap with where a person was (its last box) that continues its identity in the next frame."""

MAX_MISSED = 5
"""Frames a person may be missing (hidden behind another) and still come back as itself."""


@dataclass(frozen=True)
class People:
    """The people of one frame: `ids` gives each pixel its person (1..n, left to right by box centre; 0 where
    no body is), `boxes[i]` is person i + 1's box."""

    ids: np.ndarray
    boxes: tuple[Box, ...]

    def __len__(self) -> int:
        return len(self.boxes)

    def mask(self, person: int) -> np.ndarray:
        """Person `person` (0-based) as a boolean mask."""
        return self.ids == person + 1


def gap_for(shape: tuple[int, ...]) -> int:
    """The gap bridged in a frame of this (H, W, ...) shape."""
    return max(1, round(GAP_SHARE * max(shape[0], shape[1])))


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(ids, count): the 8-connected regions of a boolean mask, numbered 1..count in order of their first pixel
    (row by row); 0 outside the mask. Runs of each row are joined with the overlapping runs of the next."""
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    start_rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # same row order: each run's end follows its start
    parent = list(range(len(starts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(start_rows, np.arange(height + 1))
    for row in range(height - 1):
        a, a_end = row_first[row], row_first[row + 1]
        b, b_end = row_first[row + 1], row_first[row + 2]
        while a < a_end and b < b_end:  # two pointers over runs sorted by start; 8-connected: touching corners
            if starts[a] <= ends[b] and starts[b] <= ends[a]:
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            if ends[a] < ends[b]:
                a += 1
            else:
                b += 1
    ids = np.zeros((height, width), dtype=np.int32)
    numbers: dict[int, int] = {}
    for run in range(len(starts)):
        number = numbers.setdefault(root(run), len(numbers) + 1)
        ids[start_rows[run], starts[run]:ends[run]] = number
    return ids, len(numbers)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` grown by `radius` pixels in x and y (a square neighbourhood), separably."""
    grown = np.asarray(mask, dtype=bool).copy()
    for axis in (0, 1):
        source = grown.copy()
        size = source.shape[axis]
        for shift in range(1, min(radius, size - 1) + 1):
            ahead = [slice(None)] * 2
            behind = [slice(None)] * 2
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            grown[tuple(behind)] |= source[tuple(ahead)]
            grown[tuple(ahead)] |= source[tuple(behind)]
    return grown


def split_people(labels: np.ndarray, gap: int | None = None) -> People:
    """The people of one (H, W) part-label map (0 = background), without the model.

    Body pixels are grouped into regions that come within `gap` pixels of each other (default `gap_for`); a
    region that is partly torso or head (CORE_SHARE), or at least PERSON_SHARE of the largest region, is a
    person, and every other region (a lone hand or foot) joins the person whose box is nearest.
    """
    labels = np.asarray(labels)
    body = labels > 0
    if not body.any():
        return People(np.zeros(labels.shape, dtype=np.uint8), ())
    regions, count = components(dilate(body, gap if gap is not None else gap_for(labels.shape)))
    regions = np.where(body, regions, 0)
    core = np.isin(labels, HEAD_PARTS + TORSO_PARTS)
    core_pixels = np.bincount(regions[core], minlength=count + 1)
    sizes = np.bincount(regions.ravel(), minlength=count + 1)
    present = [r for r in range(1, count + 1) if sizes[r] > 0]
    largest = max(sizes[r] for r in present)
    people = [r for r in present if core_pixels[r] >= max(MIN_CORE_PIXELS, CORE_SHARE * sizes[r])
              or sizes[r] >= PERSON_SHARE * largest]
    boxes = {r: _box(regions == r) for r in present}
    owner = {r: r if r in people else min(people, key=lambda p: (_box_gap(boxes[r], boxes[p]), p))
             for r in present}
    merged = np.zeros(count + 1, dtype=np.int32)
    for region, person in owner.items():
        merged[region] = person
    regions = merged[regions]
    person_boxes = {p: _box(regions == p) for p in people}
    order = sorted(people, key=lambda p: (_centre_x(person_boxes[p]), p))
    numbering = np.zeros(count + 1, dtype=np.uint8)
    for number, person in enumerate(order, start=1):
        numbering[person] = number
    return People(numbering[regions], tuple(person_boxes[p] for p in order))


def _box(mask: np.ndarray) -> Box:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return Box(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def _box_gap(a: Box, b: Box) -> float:
    """The distance between two boxes (0 when they touch or overlap)."""
    dx = max(0, max(a.left, b.left) - min(a.right, b.right))
    dy = max(0, max(a.top, b.top) - min(a.bottom, b.bottom))
    return float(np.hypot(dx, dy))


def _centre_x(box: Box) -> float:
    return box.left + (box.width - 1) / 2


def pair_people(motion_x: list[float], reference_x: list[float],
                explicit: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """(motion person, reference person) pairs, 0-based, people numbered left to right.

    `explicit` (from `--align-pairs`, 0-based) is taken as it is. Otherwise equal counts pair in order, left
    with left; unequal counts pair every person of the smaller side, keeping the left-to-right order and
    choosing the partners whose places (`motion_x`, `reference_x`: box centres as shares of the frame's width)
    lie closest.
    """
    if explicit is not None:
        return sorted(explicit)
    n, m = len(motion_x), len(reference_x)
    if n == m:
        return [(i, i) for i in range(n)]
    if n < m:
        return [(i, j) for j, i in _ordered_matching(reference_x, motion_x)]
    return _ordered_matching(motion_x, reference_x)


def _ordered_matching(many: list[float], few: list[float]) -> list[tuple[int, int]]:
    """Each of `few` matched to a distinct one of `many`, in order, with the least total distance."""
    n, m = len(many), len(few)
    cost = np.full((n + 1, m + 1), np.inf)
    cost[:, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, min(i, m) + 1):
            cost[i, j] = min(cost[i - 1, j], cost[i - 1, j - 1] + abs(many[i - 1] - few[j - 1]))
    pairs, i, j = [], n, m
    while j > 0:
        if cost[i, j] == cost[i - 1, j]:
            i -= 1
        else:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    return pairs[::-1]


def parse_pairs(text: str) -> list[tuple[int, int]]:
    """`--align-pairs "1:2,2:1"`: motion person 1 (from the left) with reference person 2, ...; 0-based pairs.

    Raises ValueError with the reason; the caller names the option."""
    pairs = []
    for item in text.replace(" ", "").split(","):
        motion, sep, reference = item.partition(":")
        if not sep or not motion.isdigit() or not reference.isdigit() or int(motion) < 1 or int(reference) < 1:
            raise ValueError(f"{item!r} is not M:R (people counted from 1, from the left)")
        pairs.append((int(motion) - 1, int(reference) - 1))
    if len({m for m, _ in pairs}) != len(pairs) or len({r for _, r in pairs}) != len(pairs):
        raise ValueError("each person may be paired once")
    return pairs


def nearest_paired(person: int, centres: list[tuple[float, float]], paired: list[int]) -> int:
    """The paired person nearest to `person` (by box centre): an unpaired motion person moves with it."""
    x, y = centres[person]
    return min(paired, key=lambda p: ((centres[p][0] - x) ** 2 + (centres[p][1] - y) ** 2, p))


class PeopleTracker:
    """Identities across frames: a person continues the identity whose last box it overlaps most (above
    MATCH_IOU), pairs taken greedily, best overlap first; an identity missing for more than MAX_MISSED frames
    ends; anyone left over starts a new identity."""

    def __init__(self) -> None:
        self.last: dict[int, tuple[int, Box]] = {}  # identity → (frame last seen, box)
        self.next_id = 0

    def assign(self, frame: int, boxes: tuple[Box, ...]) -> list[int]:
        """The identity of each box of `frame` (frames given in order)."""
        live = {k: v for k, v in self.last.items() if frame - v[0] <= MAX_MISSED + 1}
        scored = sorted(((box_iou(box, seen), i, k) for i, box in enumerate(boxes) for k, (_, seen) in live.items()),
                        key=lambda s: (-s[0], s[1], s[2]))
        given: dict[int, int] = {}
        for overlap, i, k in scored:
            if overlap >= MATCH_IOU and i not in given and k not in given.values():
                given[i] = k
        ids = []
        for i, box in enumerate(boxes):
            if i not in given:
                given[i] = self.next_id
                self.next_id += 1
            ids.append(given[i])
            self.last[given[i]] = (frame, box)
        self.last = {k: v for k, v in self.last.items() if frame - v[0] <= MAX_MISSED + 1}
        return ids


def track_frames(boxes: list[tuple[Box, ...]], anchor: int) -> list[list[int]]:
    """The anchor person (0-based, left to right in frame `anchor`) each person of each frame is.

    Identities are followed forward through all frames (`PeopleTracker`); a person not in the anchor frame
    (someone who enters later, or one of two dancers who were one region there) becomes the anchor person whose
    box is nearest in its first frame."""
    tracker = PeopleTracker()
    ids = [tracker.assign(index, frame) for index, frame in enumerate(boxes)]
    at_anchor = {identity: person for person, identity in enumerate(ids[anchor])}
    named: dict[int, int] = dict(at_anchor)
    owners = []
    for frame, identities in zip(boxes, ids):
        for box, identity in zip(frame, identities):
            if identity not in named:
                known = [(b, at_anchor[i]) for b, i in zip(frame, identities) if i in at_anchor]
                candidates = known or [(b, p) for p, b in enumerate(boxes[anchor])]
                named[identity] = min(candidates, key=lambda c: (_centre_distance(c[0], box), c[1]))[1]
        owners.append([named[identity] for identity in identities])
    return owners


def _centre_distance(a: Box, b: Box) -> float:
    return float(np.hypot(a.left + a.width / 2 - b.left - b.width / 2, a.top + a.height / 2 - b.top - b.height / 2))


_LEVELS = 64


@lru_cache(maxsize=1)
def _label_table() -> np.ndarray:
    """(64, 64, 64) labels of the colours at the centres of the rounding levels (built once, in ~0.1 s)."""
    step = 256 // _LEVELS
    centres = np.arange(_LEVELS, dtype=np.float32) * step + (step - 1) / 2
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1).reshape(-1, 1, 3)
    return decode_labels(grid).reshape(_LEVELS, _LEVELS, _LEVELS)


def quick_labels(frame: np.ndarray) -> np.ndarray:
    """(H, W) part labels of an RGB render through a lookup table of colours rounded to 4 levels: what
    `align.decode_labels` gives (nearest palette colour, luma weighted) to within a level's rounding, about 20
    times faster; enough to tell people apart in every frame of a long clip."""
    index = np.asarray(frame, dtype=np.uint8) >> 2  # 256 levels / 64
    return _label_table()[index[..., 0], index[..., 1], index[..., 2]]


def frame_people(frame: np.ndarray, gap: int | None = None) -> People:
    """The people of one RGB render frame (see `split_people`)."""
    return split_people(quick_labels(frame), gap)


def people_from_owners(owners: np.ndarray) -> People:
    """The people of a frame whose owner map says who each pixel is (the model's instances: 0 none, 1, 2, ...),
    numbered left to right as `split_people` numbers them."""
    present = [int(v) for v in np.unique(owners) if v > 0]
    boxes = {v: _box(owners == v) for v in present}
    order = sorted(present, key=lambda v: (_centre_x(boxes[v]), v))
    numbering = np.zeros(256, dtype=np.uint8)
    for number, value in enumerate(order, start=1):
        numbering[value] = number
    return People(numbering[owners], tuple(boxes[v] for v in order))


@dataclass(frozen=True)
class InstanceMaps:
    """The model's instances of a render made from a video (`--motion-from-video`): one owner map per frame
    (PNG files, grey levels 0, 1, 2, ...), shaped into the working frame with the motion's own plan."""

    files: tuple[str, ...]
    fit: Fit

    def raw(self, index: int) -> np.ndarray:
        """Frame `index`'s owner map as the file holds it."""
        with Image.open(self.files[index]) as image:
            return np.asarray(image.convert("L"))

    def people(self, index: int) -> People:
        """Frame `index`'s people in the working frame."""
        grey = np.repeat(self.raw(index)[..., None], 3, axis=2)
        return people_from_owners(fit_motion_frame(grey, replace(self.fit, background=(0, 0, 0)))[..., 0])


def move_people(frame: np.ndarray, people: People, owners: list[int], transforms: list[Similarity],
                order: list[int], background: tuple[int, ...] | int) -> np.ndarray:
    """One frame with each person moved by its own transform.

    `owners[i]` is the anchor person whose transform person i follows; `order` lists anchor people from the
    back to the front (drawn last is on top). What no person covers gets `background`.
    """
    out = np.empty_like(frame)
    out[...] = background
    rank = {person: place for place, person in enumerate(order)}
    for person in sorted(range(len(people)), key=lambda i: (rank[owners[i]], i)):
        transform = transforms[owners[person]]
        moved = apply_similarity(frame, transform, background)
        where = apply_similarity(people.mask(person).astype(np.uint8), transform) > 0
        out[where] = moved[where]
    return out


@dataclass(frozen=True)
class PairedFit:
    """The fit of every motion person of the anchor frame (0-based, left to right): `fits[i]` is its own fit
    (None when it has no partner), `follows[i]` the person whose transform it takes (itself when paired), and
    `order` the people from the back to the front (lower feet after the transform: nearer the camera)."""

    pairs: tuple[tuple[int, int], ...]
    fits: tuple[AlignmentFit | None, ...]
    follows: tuple[int, ...]
    order: tuple[int, ...]

    @property
    def transforms(self) -> tuple[Similarity, ...]:
        return tuple(self.fits[f].transform for f in self.follows)


def fit_pairs(reference: list[Measured], motion: list[Measured], pairs: list[tuple[int, int]]) -> PairedFit:
    """One similarity per (motion, reference) pair; unpaired motion people follow the nearest paired one."""
    fits: list[AlignmentFit | None] = [None] * len(motion)
    for m, r in pairs:
        fits[m] = fit_measured(reference[r], motion[m])
    paired = [m for m, _ in pairs]
    centres = [(p.extent.cx, p.extent.cy) for p in motion]
    follows = tuple(m if fits[m] is not None else nearest_paired(m, centres, paired) for m in range(len(motion)))

    def feet(m: int) -> float:
        t = fits[follows[m]].transform
        return t.scale * (motion[m].extent.cy + motion[m].extent.height / 2) + t.dy

    order = tuple(sorted(range(len(motion)), key=lambda m: (feet(m), m)))
    return PairedFit(tuple(pairs), tuple(fits), follows, order)


@dataclass(frozen=True)
class PeopleAlignment:
    """`--align` with several people: each person of every frame moved by the transform of the anchor person it
    is. `owners` lists, per frame, the people `frame_people` finds there (by box) and the anchor person each is
    (`track_frames`); without it (a render made frame by frame, `pose --align-to`), each frame's people are
    matched to the previous frame's as they come, starting from the anchor frame's."""

    transforms: tuple[Similarity, ...]  # per anchor person
    order: tuple[int, ...]  # anchor people from the back to the front
    anchor_boxes: tuple[Box, ...]
    gap: int
    owners: tuple[tuple[tuple[Box, int], ...], ...] | None = None
    instances: InstanceMaps | None = None  # each frame's people from the model rather than from the labels

    def moving(self, frames: Iterable[np.ndarray], background: tuple[int, ...] | int) -> Iterator[np.ndarray]:
        """The frames, each person moved by its own transform, the nearer one drawn over the farther."""
        previous = list(zip(self.anchor_boxes, range(len(self.anchor_boxes))))
        for index, frame in enumerate(frames):
            people, owners = self.people_at(index, frame, previous)
            previous = list(zip(people.boxes, owners)) or previous
            yield move_people(frame, people, owners, list(self.transforms), list(self.order), background)

    def people_at(self, index: int, frame: np.ndarray,
                  previous: list[tuple[Box, int]] | None = None) -> tuple[People, list[int]]:
        """The people of frame `index` and the anchor person each is (from `owners`, else matched to `previous`,
        the people of the frame before, else to the anchor frame's)."""
        people = self.instances.people(index) if self.instances is not None else frame_people(frame, self.gap)
        if self.owners is not None and index < len(self.owners) and self.owners[index]:
            known = list(self.owners[index])
        else:
            known = previous or list(zip(self.anchor_boxes, range(len(self.anchor_boxes))))
        return people, _owners_of(people.boxes, known)

    def move_frame(self, index: int, frame: np.ndarray, background: tuple[int, ...] | int) -> np.ndarray:
        """Frame `index` of the motion, moved as `moving` moves it."""
        people, owners = self.people_at(index, frame)
        return move_people(frame, people, owners, list(self.transforms), list(self.order), background)

    def moved_masks(self, index: int, frame: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(anchor person, its mask after the move) for each person of frame `index`: what the preview colours."""
        people, owners = self.people_at(index, frame)
        return [(owner, apply_similarity(people.mask(i).astype(np.uint8), self.transforms[owner]) > 0)
                for i, owner in enumerate(owners)]


def _owners_of(boxes: tuple[Box, ...], known: list[tuple[Box, int]]) -> list[int]:
    """The anchor person of each box: the known box it is (or overlaps most, above MATCH_IOU, greedily), else
    the one whose centre is nearest."""
    scored = sorted(((box_iou(box, seen), i, k) for i, box in enumerate(boxes) for k, (seen, _) in enumerate(known)),
                    key=lambda s: (-s[0], s[1], s[2]))
    given: dict[int, int] = {}
    for overlap, i, k in scored:
        if overlap >= MATCH_IOU and i not in given and k not in given.values():
            given[i] = k
    return [known[given[i]][1] if i in given
            else min(known, key=lambda c: (_centre_distance(c[0], box), c[1]))[1] for i, box in enumerate(boxes)]


def count_runs(counts: list[int]) -> list[list[int]]:
    """People per frame as [first, last, count] runs: a sidecar stays short however long the clip."""
    runs: list[list[int]] = []
    for index, count in enumerate(counts):
        if runs and runs[-1][2] == count:
            runs[-1][1] = index
        else:
            runs.append([index, index, count])
    return runs
