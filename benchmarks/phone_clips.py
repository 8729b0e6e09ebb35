"""Phone-like training pairs, made synthetically with PyAV, laid out by hand as a DATA folder.

    python benchmarks/phone_clips.py DATA --count 2 --seconds 10            # 1080x1920, 30 fps, 1 s GOP
    python benchmarks/phone_clips.py DATA --count 30 --seconds 6 --prefix extra

Each pair is DATA/videos/NAME.mp4 (H.264, High profile as phones record it, a keyframe every second, no B-frames,
a textured backdrop sliding under a moving figure so that the encoder has real work) and DATA/densepose/NAME.mp4
(the figure's part labels drawn through MagicAnimate's palette, H.264 like a render `pose` writes). Make it
training-ready with `magicanimate prepare-data DATA --hand-laid`, which is what benchmarks/train_data.py reads.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from magicanimate_cli.motion.palette import colourise

WIDTH, HEIGHT, FPS = 1080, 1920, 30


def backdrop(seed: int) -> np.ndarray:
    """A (2 * HEIGHT, WIDTH, 3) textured backdrop: smooth colour gradients plus fine grain, like a room on a phone."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, 2 * HEIGHT)[:, None, None]
    x = np.linspace(0, 1, WIDTH)[None, :, None]
    base = 90 + 80 * np.sin(6 * y + 3 * x + rng.uniform(0, 6, 3)) * np.cos(4 * x + rng.uniform(0, 6, 3))
    grain = rng.normal(0, 12, (2 * HEIGHT, WIDTH, 1))
    return np.clip(base + grain, 0, 255).astype(np.uint8)


def figure_labels(t: float) -> np.ndarray:
    """(HEIGHT, WIDTH) part labels of a stick figure swaying over time t (seconds): torso, head, arms, legs."""
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    cx = WIDTH / 2 + 120 * np.sin(1.3 * t)
    parts = [(2, cx, 700, 170, 330), (23, cx, 280, 110, 130), (3, cx - 240, 650 + 80 * np.sin(3 * t), 60, 260),
             (4, cx + 240, 650 - 80 * np.sin(3 * t), 60, 260), (7, cx - 90, 1350, 75, 380), (8, cx + 90, 1350, 75, 380)]
    for label, px, py, rx, ry in parts:  # each ellipse drawn inside its own box only
        top, left = max(0, int(py - ry)), max(0, int(px - rx))
        yy, xx = np.mgrid[top:min(HEIGHT, int(py + ry) + 1), left:min(WIDTH, int(px + rx) + 1)]
        inside = ((xx - px) / rx) ** 2 + ((yy - py) / ry) ** 2 <= 1
        labels[top:top + inside.shape[0], left:left + inside.shape[1]][inside] = label
    return labels


def encode(path: Path, frames, crf: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"g": str(FPS), "keyint_min": str(FPS), "bf": "0", "crf": str(crf), "preset": "veryfast",
                          "profile": "high"}
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_pair(data: Path, name: str, seconds: float, seed: int) -> None:
    room = backdrop(seed)
    count = round(seconds * FPS)
    labels = [figure_labels(i / FPS) for i in range(count)]

    def video():
        for i, label in enumerate(labels):
            shift = (7 * i) % HEIGHT
            frame = room[shift:shift + HEIGHT].copy()
            body = label > 0
            frame[body] = 40 + 8 * label[body, None]
            yield frame

    encode(data / "videos" / f"{name}.mp4", video(), crf=23)
    encode(data / "densepose" / f"{name}.mp4", (colourise(x) for x in labels), crf=18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--prefix", default="phone")
    args = parser.parse_args()
    for i in range(args.count):
        write_pair(args.data, f"{args.prefix}{i:02d}", args.seconds, seed=i)
        print(f"{args.data}/videos/{args.prefix}{i:02d}.mp4", flush=True)


if __name__ == "__main__":
    main()
