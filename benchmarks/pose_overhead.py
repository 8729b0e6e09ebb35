"""What `pose` costs besides the model: reading, rendering and encoding, with the tests' stand-in detector.

    python benchmarks/pose_overhead.py                  # 512×512, 100 frames, CPU
    python benchmarks/pose_overhead.py --size 768 --frames 200

The stand-in (tests/pose_standin.py) finds coloured blocks in a few milliseconds, so the frames/s printed here is
the ceiling that decoding, label resampling, colouring and encoding put on `pose`; the real model's own time
(see the estimate from its FLOPs in docs/pose.md) comes on top.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from media_helpers import encode_video  # noqa: E402
from pose_standin import moving_blobs, save_standin  # noqa: E402

from magicanimate_cli.densepose.model import PoseModel  # noqa: E402
from magicanimate_cli.densepose.settings import PoseSettings  # noqa: E402
from magicanimate_cli.densepose.video import open_video
from magicanimate_cli.pose.job import run_pose_job
from magicanimate_cli.runtime.progress import Reporter  # noqa: E402


class TimedModel:
    """The loaded stand-in, timing its own calls so that they can be taken out of the total."""

    def __init__(self, model: PoseModel) -> None:
        self.model, self.seconds = model, 0.0

    def detect(self, frame):
        started = time.perf_counter()
        found = self.model.detect(frame)
        self.seconds += time.perf_counter() - started
        return found

    def describe(self) -> dict:
        return self.model.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        video = encode_video(root / "in.mp4", moving_blobs(args.frames, args.size, args.size), 25)
        model = PoseModel.load(save_standin(root / "standin.torchscript"), torch.device("cpu"))
        started = time.perf_counter()
        frames = sum(1 for _ in open_video(video))
        results = {"size": args.size, "frames": frames, "torch_threads": torch.get_num_threads(),
                   "decode_only_fps": round(frames / (time.perf_counter() - started), 1)}
        for kind, name in (("mp4", "out.mp4"), ("png", "out-png")):
            timed = TimedModel(model)
            seconds = run_pose_job(timed, PoseSettings(), video, root / name, Reporter()).timings["render_s"]
            results[f"to_{kind}_fps_with_standin"] = round(frames / seconds, 1)
            results[f"to_{kind}_fps_without_standin"] = round(frames / (seconds - timed.seconds), 1)
            results[f"to_{kind}_standin_ms_per_frame"] = round(1000 * timed.seconds / frames, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
