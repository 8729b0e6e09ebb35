"""Steady renders (`--smooth`): each person followed across frames, its box and part logits combined over
neighbouring frames, and short misses filled, before the argmax draws the labels.

Why: DensePose runs on each frame alone, so every box jitters by a few pixels, part labels flip along their
borders from one frame to the next, and a frame where the detector misses the person renders empty. The
animation model copies all three into the video.

How, per person (identity by box overlap, `IdentityTracker`):
- its box at frame t is a local quadratic fit, with triangular weights, of its boxes at t−r … t+r (`fit_box`):
  zero-phase (centred), so a steady motion comes out where it is, without the lag a causal filter adds, and
  a person turning at the end of a fast swing is not cut short;
- its coarse/fine logits at t are the weighted mean of its logits at t−r … t+r. DensePose gives them in the
  box's own S×S grid, which moves and scales with the person, so the mean combines the same body point across
  frames rather than the same image pixel: a fast-moving person does not leave a ghost;
- a frame where a followed person is missing, for at most `fill_gap` frames between two detections, gets the
  box interpolated between its neighbours and the logits of the nearest detected frame.

Memory stays bounded: frames are drawn from a sliding buffer of the model's outputs, `radius + fill_gap` frames
each side of the frame being drawn, never the whole video.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .model import Detections
from .render import drawing_order, pixel_boxes, render_labels


@dataclass(frozen=True)
class SmoothSettings:
    """How strongly to steady a render; the defaults are the ones docs/smoothing.md measures."""

    radius: int = 3  # frames each side whose boxes and logits are combined
    fill_gap: int = 3  # longest run of missed frames filled between two detections of a person
    match_iou: float = 0.3  # box overlap (after predicting the motion) that continues a person

    @property
    def look_ahead(self) -> int:
        """Frames after t that must be known before t is drawn (and kept before it)."""
        return self.radius + self.fill_gap

    def record(self) -> dict:
        return {"radius": self.radius, "fill_gap": self.fill_gap, "match_iou": self.match_iou}


@dataclass(frozen=True)
class Observation:
    """One person as the model saw it in one frame (on the CPU)."""

    box: torch.Tensor  # (4,) float xyxy, as given (clipped only when drawn)
    score: float | None
    rank: int  # place in the model's list (most confident first)
    coarse: torch.Tensor  # (2, S, S)
    fine: torch.Tensor  # (25, S, S)


@dataclass(frozen=True)
class SteadyFrame:
    """A drawn frame: its labels, how many people are on it, and how many of them were filled in."""

    labels: np.ndarray
    people: int
    filled: int
    owners: np.ndarray | None = None  # which person each pixel shows (render.render_labels), when asked


def kept_people(detections: Detections, width: int, height: int, min_score: float,
                people: str) -> list[Observation]:
    """The people the plain render would draw, as observations (the same threshold and `--people` choice)."""
    order = drawing_order(detections, pixel_boxes(detections.boxes, width, height), min_score, people)
    scores = None if detections.scores is None else detections.scores.detach().cpu()
    return [Observation(detections.boxes[i].detach().cpu(), None if scores is None else float(scores[i]), i,
                        detections.coarse[i].detach().cpu(), detections.fine[i].detach().cpu())
            for i in sorted(order)]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, m) intersection over union of xyxy boxes; 0 where a box has no area."""
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=2)
    area = lambda boxes: (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-9), torch.zeros_like(union))


class IdentityTracker:
    """Gives each person an id that stays the same while it stays in view (or is missed for a few frames).

    A person continues the track whose box it overlaps most, above `match_iou`: the track's last box or that box
    moved on at its last velocity (so a fast person still overlaps itself after a miss), whichever fits better; pairs are taken greedily, best
    overlap first; anyone left over starts a new track.
    """

    def __init__(self, match_iou: float, max_gap: int) -> None:
        self.match_iou = match_iou
        self.max_gap = max_gap
        self.tracks: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}  # id → (last frame, box, velocity)
        self.next_id = 0

    def assign(self, frame: int, people: list[Observation]) -> dict[int, Observation]:
        live = {k: v for k, v in self.tracks.items() if frame - v[0] <= self.max_gap + 1}
        ids = list(live)
        taken: dict[int, Observation] = {}
        if people and ids:
            predicted = torch.stack([live[k][1] + live[k][2] * (frame - live[k][0]) for k in ids])
            found = torch.stack([p.box.float() for p in people])
            last = torch.stack([live[k][1] for k in ids])
            overlap = torch.maximum(box_iou(found, predicted), box_iou(found, last))
            pairs = sorted(((float(overlap[i, j]), i, j) for i in range(len(people)) for j in range(len(ids))),
                           key=lambda p: (-p[0], p[1], p[2]))
            used_people: set[int] = set()
            for value, i, j in pairs:
                if value < self.match_iou or i in used_people or ids[j] in taken:
                    continue
                used_people.add(i)
                taken[ids[j]] = people[i]
        matched = {id(p) for p in taken.values()}
        for person in people:
            if id(person) not in matched:
                taken[self.next_id] = person
                self.next_id += 1
        for key, person in taken.items():
            box = person.box.float()
            if key in live:
                last_frame, last_box, _ = live[key]
                velocity = (box - last_box) / (frame - last_frame)
            else:
                velocity = torch.zeros(4)
            self.tracks[key] = (frame, box, velocity)
        self.tracks = {k: v for k, v in self.tracks.items() if frame - v[0] <= self.max_gap + 1}
        return taken


def window_weights(offsets: Iterable[int], radius: int) -> list[float]:
    """Triangular weights, largest at the frame itself: nearer frames count more."""
    return [float(radius + 1 - abs(d)) for d in offsets]


def fit_box(offsets: list[int], boxes: list[torch.Tensor], radius: int) -> torch.Tensor:
    """The box at offset 0 from a weighted local quadratic fit of the boxes seen at `offsets` (frames from t).

    A centred fit has no phase delay; a quadratic one follows a steadily accelerating motion exactly, so a
    person turning back at the end of a fast swing is not pulled inward as a mean or a linear fit pulls it
    (docs/smoothing.md measures both), and a one-sided window (clip ends, a missed neighbour) is not dragged
    toward the side it has. With fewer distinct frames the fit drops to a line, then to the box itself.
    """
    if len(boxes) == 1:
        return boxes[0].float()
    d = torch.tensor(offsets, dtype=torch.float64)
    w = torch.tensor(window_weights(offsets, radius), dtype=torch.float64)
    x = torch.stack(boxes).to(torch.float64)
    order = min(2, len(set(offsets)) - 1)
    design = torch.stack([d ** k for k in range(order + 1)], dim=1)  # (n, order + 1): 1, d, d²
    normal = design.T @ (w[:, None] * design)
    coefficients = torch.linalg.solve(normal, design.T @ (w[:, None] * x))
    return coefficients[0].to(torch.float32)


def mean_logits(offsets: list[int], maps: list[torch.Tensor], radius: int) -> torch.Tensor:
    """Weighted mean of a person's S×S logits over neighbouring frames (its own box grid, not the image's)."""
    if len(maps) == 1:
        return maps[0]
    w = torch.tensor(window_weights(offsets, radius), dtype=maps[0].dtype)
    return (torch.stack(maps) * (w / w.sum()).view(-1, 1, 1, 1)).sum(0)


class SteadyRenderer:
    """Turns a stream of per-frame detections into steady label maps, `look_ahead` frames behind the input."""

    def __init__(self, settings: SmoothSettings, width: int, height: int, min_score: float, people: str,
                 owners: bool = False) -> None:
        self.settings = settings
        self.width, self.height = width, height
        self.min_score, self.people = min_score, people
        self.owners = owners
        self.tracker = IdentityTracker(settings.match_iou, settings.fill_gap)
        self.seen: dict[int, dict[int, Observation]] = {}  # frame → track id → observation (sliding)

    def frames(self, detections: Iterable[Detections]) -> Iterator[SteadyFrame]:
        """One SteadyFrame per input frame, in order; frame t is drawn once frame t + look_ahead is known."""
        ahead = self.settings.look_ahead
        count = 0
        for index, frame in enumerate(detections):
            people = kept_people(frame, self.width, self.height, self.min_score, self.people)
            self.seen[index] = self.tracker.assign(index, people)
            count = index + 1
            if index - ahead >= 0:
                yield self.draw(index - ahead, count)
        for t in range(max(count - ahead, 0), count):
            yield self.draw(t, count)

    def draw(self, t: int, known: int) -> SteadyFrame:
        """Frame t from the frames within reach of it; frames no longer needed are dropped."""
        reach = self.settings.look_ahead
        for old in [k for k in self.seen if k < t - reach]:
            del self.seen[old]
        people = self.people_at(t, known)
        labels = np.zeros((self.height, self.width), dtype=np.uint8)
        owners = np.zeros_like(labels) if self.owners else None
        if people:
            people.sort(key=lambda p: p[0].rank)  # the model's order: scoreless output is drawn by it
            observations = [p[0] for p in people]
            scores = None if observations[0].score is None else torch.tensor([o.score for o in observations])
            detections = Detections(torch.stack([o.box for o in observations]), scores,
                                    torch.stack([o.coarse for o in observations]),
                                    torch.stack([o.fine for o in observations]))
            labels, drawn = render_labels(detections, self.width, self.height, self.min_score, self.people, owners)
        else:
            drawn = 0
        return SteadyFrame(labels, drawn, sum(p[1] for p in people), owners)

    def people_at(self, t: int, known: int) -> list[tuple[Observation, bool]]:
        """(steadied observation, whether it was filled in) for each person to draw at frame t."""
        gap = self.settings.fill_gap
        here = self.seen.get(t, {})
        tracks = set(here)
        for frame in range(t - gap, t):  # people seen shortly before, who may be back shortly after
            tracks.update(self.seen.get(frame, {}))
        result = []
        for track in sorted(tracks):
            if track in here:
                result.append((self.steadied(track, t), False))
                continue
            before = [f for f in range(t - 1, t - gap - 1, -1) if track in self.seen.get(f, {})]
            after = [f for f in range(t + 1, min(t + gap, known - 1) + 1) if track in self.seen.get(f, {})]
            if before and after and after[0] - before[0] - 1 <= gap:
                result.append((self.filled(track, t, before[0], after[0]), True))
        return result

    def steadied(self, track: int, t: int) -> Observation:
        """The person's observation at t with its box fitted and its logits combined over t ± radius."""
        radius = self.settings.radius
        near = [(f - t, self.seen[f][track]) for f in range(t - radius, t + radius + 1)
                if track in self.seen.get(f, {})]
        offsets = [d for d, _ in near]
        own = self.seen[t][track]
        return Observation(fit_box(offsets, [o.box for _, o in near], radius), own.score, own.rank,
                           mean_logits(offsets, [o.coarse for _, o in near], radius),
                           mean_logits(offsets, [o.fine for _, o in near], radius))

    def filled(self, track: int, t: int, before: int, after: int) -> Observation:
        """A missed frame: the box between the neighbours' steadied boxes, the nearest neighbour's logits."""
        first, last = self.steadied(track, before), self.steadied(track, after)
        share = (t - before) / (after - before)
        nearest = first if t - before <= after - t else last
        box = first.box + (last.box - first.box) * share
        return Observation(box, nearest.score, nearest.rank, nearest.coarse, nearest.fine)


def frame_ranges(frames: Iterable[int]) -> list[list[int]]:
    """Sorted frame indices as [first, last] runs: a sidecar stays short when a whole stretch is empty."""
    runs: list[list[int]] = []
    for frame in sorted(frames):
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return runs
