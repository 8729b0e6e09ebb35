"""Shared fixtures: the tiny official-layout bundle and the official parity cases, loaded once per session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each worker's torch (and every command it starts) then uses one
    # thread, so workers never wait on each other's OpenMP threads. Set before torch is first imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
TINY_BUNDLE = DATA / "tiny-bundle"
PARITY = DATA / "parity"


@dataclass
class ParityCase:
    name: str
    folder: Path
    settings: dict

    def array(self, name: str) -> np.ndarray:
        return np.load(self.folder / f"{name}.npy")

    @property
    def frames(self) -> int:
        return int(self.settings["num_frames"])


def load_case(name: str) -> ParityCase:
    folder = PARITY / "cases" / name
    return ParityCase(name, folder, json.loads((folder / "case.json").read_text()))


@pytest.fixture(scope="session")
def tiny_bundle() -> Path:
    return TINY_BUNDLE


@pytest.fixture(scope="session")
def animator():
    from magicanimate_cli import Animator

    return Animator.from_pretrained(TINY_BUNDLE)


def cli_exit_code(args: list) -> int:
    """Run `magicanimate ARGS` in this process through the console script's entry point; its exit code.

    The entry point's error handling (one-line errors, exit codes) is exercised exactly as from a shell.
    """
    from magicanimate_cli.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def run_cli(args: list, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one in-process `magicanimate ARGS`."""
    code = cli_exit_code(args)
    out, err = capsys.readouterr()
    return code, out, err


def start_paused_at(point: str, args: list, env: dict | None = None) -> subprocess.Popen:
    """Start `magicanimate ARGS` in a subprocess and return once it waits at the test hook `point`.

    The run announces the point on an inherited pipe (see magicanimate_cli/testhooks.py) and then waits for a
    signal, so the test interrupts it exactly there, however loaded the machine. If the run ends without getting
    there, this fails with its stderr.
    """
    from magicanimate_cli.runtime.testhooks import PAUSE_AT, PAUSE_READY

    read_end, write_end = os.pipe()
    env = {**(os.environ if env is None else env), PAUSE_AT: point, PAUSE_READY: f"/dev/fd/{write_end}"}
    proc = subprocess.Popen([sys.executable, "-m", "magicanimate_cli", *map(str, args)], env=env,
                            pass_fds=(write_end,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    os.close(write_end)
    with os.fdopen(read_end) as ready:
        reached = ready.readline()  # the announcement, or "" once the run has ended
    if reached != f"{point}\n":
        _, err = proc.communicate(timeout=60)
        raise AssertionError(f"the run ended (exit {proc.returncode}) before reaching {point}: {err}")
    return proc


def _default_sigint() -> None:
    """A shell's background job inherits SIGINT ignored; the run must get Ctrl-C's KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def pose_standin(tmp_path_factory) -> dict:
    """TorchScript stand-ins for the DensePose model (tests/pose_standin.py), saved once as files:
    `model` (dict output with scores), `swapped` (green scores above red), `tuple` (the Hub form, no scores)."""
    from pose_standin import BLUE, GREEN, RED, save_standin

    root = tmp_path_factory.mktemp("pose-models")
    return {"model": save_standin(root / "blobs.torchscript"),
            "swapped": save_standin(root / "swapped.torchscript", {RED: 0.85, GREEN: 0.95, BLUE: 0.7}),
            "tuple": save_standin(root / "tuple.torchscript", as_tuple=True)}
