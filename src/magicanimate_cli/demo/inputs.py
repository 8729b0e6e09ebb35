"""Synthetic default inputs, so the tool can be tried (and tested) without any downloaded media.

`make_reference_image` draws a simple standing figure on a pale backdrop; `make_motion_frames`
renders the same figure exactly as MagicAnimate's DensePose clips are rendered (see `densepose`):
each pixel's fine body-part index (1..24, 0 for the background) coloured through viridis, so the
background is (68, 1, 84) and every pixel is one of the 25 palette colours, while the arms wave,
the legs step and the body sways. Both are deterministic for a given seed.

Bodies are built from capsules (line segments with a radius) in coordinates where the
frame height is 1, so any frame size gives the same picture. The figure faces the camera, so
its right side is on the image's left (side "l" below, x < 0).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..media.writer import open_writer, write_image_atomic
from ..motion.palette import colourise

Point = tuple[float, float]

# (name, joint a, joint b, radius, DensePose fine part index), drawn in this order (later parts on top).
# Parts: 2 torso (front), 3/4 right/left hand, 5/6 left/right foot, 7/8 right/left upper leg, 11/12 right/left
# lower leg, 15/16 left/right upper arm, 19/20 left/right lower arm, 23/24 right/left half of the head.
_LIMBS = (
    ("torso", "neck", "pelvis", 0.085, 2),
    ("upper_leg_l", "hip_l", "knee_l", 0.045, 7),
    ("lower_leg_l", "knee_l", "ankle_l", 0.036, 11),
    ("foot_l", "ankle_l", "toe_l", 0.022, 6),
    ("upper_leg_r", "hip_r", "knee_r", 0.045, 8),
    ("lower_leg_r", "knee_r", "ankle_r", 0.036, 12),
    ("foot_r", "ankle_r", "toe_r", 0.022, 5),
    ("upper_arm_l", "shoulder_l", "elbow_l", 0.034, 16),
    ("lower_arm_l", "elbow_l", "wrist_l", 0.028, 20),
    ("hand_l", "wrist_l", "hand_l", 0.026, 3),
    ("upper_arm_r", "shoulder_r", "elbow_r", 0.034, 15),
    ("lower_arm_r", "elbow_r", "wrist_r", 0.028, 19),
    ("hand_r", "wrist_r", "hand_r", 0.026, 4),
)
_HEAD_RADIUS = 0.07
_HEAD_PARTS = (23, 24)  # the figure's right half of the head (image left), then its left half


@dataclass(frozen=True)
class DemoInputs:
    """Where `write_demo_inputs` put the two files."""

    reference: Path
    motion: Path


def _pose(phase: float, sway: float, wave: float) -> dict[str, Point]:
    """Joint positions (x, y) with frame height 1 and x = 0 at the body's centre line.

    `phase` runs 0..2*pi over one motion cycle; `wave` scales the arm swing; 0 gives the
    rest pose used for the reference picture.
    """
    dx = sway * math.sin(phase)
    bob = 0.01 * math.sin(2 * phase)
    neck = (dx, 0.25 + bob)
    pelvis = (dx * 0.6, 0.56 + bob)
    joints = {"head": (dx * 1.1, 0.16 + bob), "neck": neck, "pelvis": pelvis}
    for side, sign in (("l", -1.0), ("r", 1.0)):
        shoulder = (neck[0] + sign * 0.085, neck[1] + 0.02)
        lift = wave * (0.5 + 0.5 * math.sin(phase + (0.0 if sign < 0 else math.pi)))
        upper = math.radians(15 + 110 * lift)  # angle from hanging straight down, outwards
        elbow = (shoulder[0] + sign * 0.14 * math.sin(upper), shoulder[1] + 0.14 * math.cos(upper))
        lower = upper + math.radians(20 + 40 * lift)
        wrist = (elbow[0] + sign * 0.12 * math.sin(lower), elbow[1] + 0.12 * math.cos(lower))
        hand = (wrist[0] + sign * 0.04 * math.sin(lower), wrist[1] + 0.04 * math.cos(lower))
        hip = (pelvis[0] + sign * 0.045, pelvis[1] + 0.02)
        step = 0.25 * wave * math.sin(phase + (0.0 if sign < 0 else math.pi))
        knee = (hip[0] + 0.19 * math.sin(step) + sign * 0.01, hip[1] + 0.19 * math.cos(step))
        ankle = (knee[0] + 0.18 * math.sin(step * 0.5) + sign * 0.005, knee[1] + 0.18)
        toe = (ankle[0] + sign * 0.045, ankle[1] + 0.012)
        joints |= {f"shoulder_{side}": shoulder, f"elbow_{side}": elbow, f"wrist_{side}": wrist,
                   f"hand_{side}": hand}
        joints |= {f"hip_{side}": hip, f"knee_{side}": knee, f"ankle_{side}": ankle, f"toe_{side}": toe}
    return joints


def _grid(width: int, height: int, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in body units (height 1, x centred)."""
    ys = (np.arange(height * scale, dtype=np.float32) + 0.5) / (height * scale)
    xs = (np.arange(width * scale, dtype=np.float32) + 0.5 - width * scale / 2) / (height * scale)
    return np.meshgrid(xs, ys)


def _capsule(xx: np.ndarray, yy: np.ndarray, a: Point, b: Point, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Inside mask and position along the segment (0 at a, 1 at b), for shading the reference picture."""
    ax, ay = a
    vx, vy = b[0] - ax, b[1] - ay
    length_sq = max(vx * vx + vy * vy, 1e-9)
    t = np.clip(((xx - ax) * vx + (yy - ay) * vy) / length_sq, 0.0, 1.0)
    px, py = xx - (ax + t * vx), yy - (ay + t * vy)
    return px * px + py * py <= radius * radius, t


def render_labels(joints: dict[str, Point], width: int, height: int) -> np.ndarray:
    """(H, W) uint8 DensePose fine part index of each pixel of a pose: 0 background, 1..24 body parts."""
    xx, yy = _grid(width, height)
    labels = np.zeros((height, width), dtype=np.uint8)
    for _, a, b, radius, part in _LIMBS:
        inside, _ = _capsule(xx, yy, joints[a], joints[b], radius)
        labels[inside] = part
    head = joints["head"]
    inside, _ = _capsule(xx, yy, (head[0], head[1] - 0.02), (head[0], head[1] + 0.02), _HEAD_RADIUS)
    labels[inside & (xx < head[0])] = _HEAD_PARTS[0]
    labels[inside & (xx >= head[0])] = _HEAD_PARTS[1]
    return labels


def render_densepose(joints: dict[str, Point], width: int, height: int) -> np.ndarray:
    """One DensePose render of a pose in MagicAnimate's format (viridis parts on (68, 1, 84)), uint8 RGB."""
    return colourise(render_labels(joints, width, height))


def make_motion_frames(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """`n` DensePose renders (N, H, W, 3) uint8 of the figure dancing through one cycle."""
    if n < 1 or width < 1 or height < 1:
        raise ValueError(f"need at least one frame of at least 1x1 pixels, got {n} frames of {width}x{height}")
    rng = np.random.default_rng(seed)
    offset = float(rng.uniform(0, 2 * math.pi))
    sway = float(rng.uniform(0.02, 0.05))
    wave = float(rng.uniform(0.7, 1.0))
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    for index in range(n):
        phase = offset + 2 * math.pi * index / n
        frames[index] = render_densepose(_pose(phase, sway, wave), width, height)
    return frames


def make_reference_image(size: int = 512, seed: int = 0) -> np.ndarray:
    """A square picture of the figure at rest (size x size, uint8 RGB): skin, shirt, trousers, shoes, hair.

    Drawn at twice the size and shrunk, so the edges are smooth like a photograph's.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    rng = np.random.default_rng(seed)
    shirt = rng.uniform(40, 200, size=3).astype(np.float32)
    scale = 2
    xx, yy = _grid(size, size, scale)
    backdrop = np.stack([235 - 25 * yy, 232 - 20 * yy, 225 - 30 * yy], axis=-1).astype(np.float32)
    joints = _pose(0.0, 0.0, 0.0)
    skin = np.asarray([224, 172, 140], dtype=np.float32)
    trousers = np.asarray([45, 55, 90], dtype=np.float32)
    shoes = np.asarray([70, 45, 35], dtype=np.float32)
    colours = {"torso": shirt, "upper_arm": shirt * 0.9, "foot": shoes}
    for name, a, b, radius, _ in _LIMBS:
        kind = name.rsplit("_", 1)[0] if name != "torso" else "torso"
        colour = colours.get(kind, trousers if "leg" in kind else skin)
        inside, u = _capsule(xx, yy, joints[a], joints[b], radius)
        backdrop[inside] = (colour * (1.0 - 0.15 * u)[..., None])[inside]
    head = joints["head"]
    inside, _ = _capsule(xx, yy, (head[0], head[1] - 0.02), (head[0], head[1] + 0.02), _HEAD_RADIUS)
    backdrop[inside] = skin
    hair, _ = _capsule(xx, yy, (head[0] - 0.03, head[1] - 0.05), (head[0] + 0.03, head[1] - 0.05), 0.045)
    backdrop[hair & (yy < head[1] - 0.02)] = np.asarray([60, 40, 30], dtype=np.float32)
    picture = Image.fromarray(np.clip(np.rint(backdrop), 0, 255).astype(np.uint8))
    return np.asarray(picture.resize((size, size), Image.Resampling.LANCZOS))


def write_demo_inputs(
    directory: str | os.PathLike[str],
    size: int = 512,
    frames: int = 16,
    fps: Fraction | int = 25,
    seed: int = 0,
) -> DemoInputs:
    """Write reference.png and motion.mp4 (size x size, `frames` frames at `fps`) into `directory`."""
    folder = Path(directory)
    reference = write_image_atomic(folder / "reference.png", make_reference_image(size, seed=seed))
    motion_path = folder / "motion.mp4"
    with open_writer(motion_path, Fraction(fps), size, size) as writer:
        for frame in make_motion_frames(frames, size, size, seed=seed):
            writer.write(frame)
    return DemoInputs(reference=reference, motion=motion_path)
