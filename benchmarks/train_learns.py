"""Evidence that `magicanimate train` learns the task: the held-out loss and the condition gains at step 0 and
after N steps, with their standard errors, on a synthetic data set of people who differ in look and motion.

    python benchmarks/train_learns.py                       # stage 1 from SD 1.5 (the tiny bundle), CPU
    python benchmarks/train_learns.py --stage 2 --steps 200 # stage 2: the motion modules, from the tiny release
    python benchmarks/train_learns.py --out /tmp/learns --steps 400 --threads 2

The data: people drawn as coloured part-label bodies (head, torso, arms, legs; each person their own colours,
proportions and background) who walk, bob or sway at their own speeds; their DensePose renders in the motion
palette. Training people and held-out people are different people (the held-out set is --val-data: a model must
transfer a look it has never seen from the reference, and follow a pose sequence it has never seen). Everything
runs on the CPU from tests/data/tiny-bundle (random, frozen SD 1.5 stand-in: a 32-channel UNet and VAE), so the
figures say whether the training machinery learns, not what the released model would reach.

Prints, for the first and the last held-out measurement: loss, ref_gain, pose_gain (and temporal_gain in
stage 2) with their standard errors and how many standard errors each gain is from zero; the run folder keeps
metrics.jsonl and report.png.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from magicanimate_cli.cli import main as cli
from magicanimate_cli.media.writer import open_writer
from magicanimate_cli.motion.palette import colourise

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny-bundle"
MOTIONS = ("walk", "bob", "sway")
PARTS = {"head": 2, "torso": 1, "left_arm": 4, "right_arm": 3, "left_leg": 8, "right_leg": 7}
"""Body part -> DensePose part label (1-24), so renders use MagicAnimate's palette."""


def person(rng: random.Random) -> dict:
    """A person's look (a colour per part, a background), proportions and motion."""
    def colour() -> tuple[int, int, int]:
        return tuple(rng.randrange(30, 226) for _ in range(3))

    return {"colours": {p: colour() for p in PARTS}, "background": colour(), "width": rng.uniform(0.16, 0.26),
            "height": rng.uniform(0.55, 0.75), "motion": rng.choice(MOTIONS), "speed": rng.uniform(0.6, 1.4),
            "phase": rng.uniform(0, 6.28)}


def labels(p: dict, frame: int, size: int) -> np.ndarray:
    """Part labels of person `p` at `frame`: boxes for the parts, placed by the person's motion."""
    out = np.zeros((size, size), dtype=np.int64)
    w, h = int(p["width"] * size), int(p["height"] * size)
    t = p["phase"] + 0.35 * p["speed"] * frame
    cx, top = size // 2, (size - h) // 2
    if p["motion"] == "walk":
        cx = int(size * 0.25 + (size * 0.5) * ((t / 6.28) % 1.0))
    elif p["motion"] == "bob":
        top += int(size * 0.1 * np.sin(t))
    else:
        cx += int(size * 0.15 * np.sin(t))
    swing = int(w * 0.4 * np.sin(2 * t))
    head, torso_h = h // 5, 2 * h // 5
    left = cx - w // 2

    def box(part: str, y0: int, y1: int, x0: int, x1: int) -> None:
        out[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = PARTS[part]

    box("head", top, top + head, cx - w // 4, cx + w // 4)
    box("torso", top + head, top + head + torso_h, left, left + w)
    box("left_arm", top + head, top + head + torso_h, left - w // 3 + swing // 2, left + swing // 2)
    box("right_arm", top + head, top + head + torso_h, left + w - swing // 2, left + w + w // 3 - swing // 2)
    box("left_leg", top + head + torso_h, top + h, left + swing, left + w // 2 + swing)
    box("right_leg", top + head + torso_h, top + h, left + w // 2 - swing, left + w - swing)
    return out


def photo(p: dict, parts: np.ndarray) -> np.ndarray:
    rgb = np.empty((*parts.shape, 3), dtype=np.uint8)
    rgb[:] = p["background"]
    for name, label in PARTS.items():
        rgb[parts == label] = p["colours"][name]
    return rgb


def write_people(root: Path, count: int, frames: int, size: int, seed: int) -> Path:
    """DATA/videos/NAME.mp4 and DATA/densepose/NAME.mp4 for `count` people (near-lossless H.264)."""
    rng = random.Random(seed)
    for i in range(count):
        p = person(rng)
        parts = [labels(p, f, size) for f in range(frames)]
        for folder, pictures in (("videos", [photo(p, x) for x in parts]),
                                 ("densepose", [colourise(x) for x in parts])):
            with open_writer(root / folder / f"person{i:02d}.mp4", Fraction(25), size, size, crf=4) as writer:
                for picture in pictures:
                    writer.write(picture)
    return root


def figures(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val" in r]


def line(record: dict) -> str:
    val = record["val"]
    out = [f"step {record['step']:>5}", f"loss {val['loss']:.5f} ± {val['loss_se']:.5f}"]
    for gain in ("ref_gain", "pose_gain", "temporal_gain"):
        if gain in val:
            se = val[f"{gain}_se"]
            z = val[gain] / se if se > 0 else 0.0
            out.append(f"{gain} {val[gain]:+.5f} ± {se:.5f} ({z:+.1f} s.e.)")
    return "  ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", type=int, default=1, choices=(1, 2))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=4, help="stage 2: frames per clip")
    ap.add_argument("--people", type=int, default=12, help="training people (held-out: a third as many)")
    ap.add_argument("--items", type=int, default=32, help="held-out items")
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/train-learns"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out}: exists and is not empty; pass another --out")
    data = write_people(out / "data", args.people, 24, args.size, args.seed)
    held = write_people(out / "held-out", max(2, args.people // 3), 24, args.size, args.seed + 1000)
    run = out / "run"
    stage = ["--stage", "1", "--motion-module", str(TINY / "MagicAnimate" / "temporal_attention" /
                                                   "temporal_attention.ckpt")] if args.stage == 1 else [
        "--stage", "2", "--from", str(TINY / "MagicAnimate"), "--frames", str(args.frames)]
    started = time.perf_counter()
    cli(["train", str(data), "-o", str(run), *stage, "--weights", str(TINY), "--size", str(args.size),
         "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
         "--seed", str(args.seed), "--device", "cpu", "--val-data", str(held), "--val-items", str(args.items),
         "--val-every", str(args.val_every), "--checkpoint-every", str(args.steps), "--quiet"])
    seconds = time.perf_counter() - started
    records = figures(run)
    print(f"stage {args.stage}, {args.steps} steps of batch {args.batch_size} at {args.size}², lr {args.lr}, "
          f"{args.items} held-out items of {max(2, args.people // 3)} unseen people; {seconds:.0f} s "
          f"({args.threads} threads)")
    for record in records:
        print(line(record))
    print(f"report: {run / 'report.png'}")


if __name__ == "__main__":
    main()
