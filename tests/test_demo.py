"""The embedded default: a tiny seeded model in the official layout plus synthetic inputs, animated by the CLI."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import av

from magicanimate_cli.demo.tiny_weights import build_tiny_weights
from magicanimate_cli.engine.loader import check_weights


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tiny_weights_are_seeded_complete_and_small(tmp_path):
    first = build_tiny_weights(tmp_path / "a", seed=5)
    second = build_tiny_weights(tmp_path / "b", seed=5)
    other = build_tiny_weights(tmp_path / "c", seed=6)
    assert _files(first) == _files(second)
    assert _files(first) != _files(other)
    assert check_weights(first) == []
    assert sum(len(b) for b in _files(first).values()) < 20 * 2**20


def test_demo_module_and_animate_write_a_playable_video(tmp_path):
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "magicanimate_cli.demo", str(demo), "--frames", "9"], check=True,
                   capture_output=True, timeout=600)
    out = demo / "animation.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "magicanimate_cli", "animate", str(demo / "reference.png"), str(demo / "motion.mp4"),
         "--weights", str(demo / "weights"), "--size", "128", "--steps", "1", "--seed", "1", "-o", str(out), "-q"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) == 9
        assert stream.average_rate == Fraction(25) and (stream.width, stream.height) == (128, 128)
        assert stream.codec_context.name == "h264"
