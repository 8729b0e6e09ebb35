"""`--shard auto`: each process launched by torchrun or Slurm takes its own share of a batch and its own GPU.

The rules are checked on known environment mappings (the variables each launcher sets); the wiring through the
real `animate` command with the variables set; and the whole thing end to end: `torchrun` starts two `pose`
processes on the CPU, with the TorchScript stand-in model, which split a batch between them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as run
from media_helpers import encode_video, save_image
from pose_standin import moving_blobs

from magicanimate_cli.animate.batch import parse_shard, take_shard
from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image
from magicanimate_cli.media.reader import open_motion
from magicanimate_cli.media.writer import open_writer
from magicanimate_cli.runtime.cluster import ClusterShare, cluster_share, device_for_share, resolve_shard
from magicanimate_cli.runtime.errors import SettingsError

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                      "MASTER_ADDR",
                      "MASTER_PORT", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                      "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP", "SLURM_PROCID", "SLURM_NTASKS",
                      "SLURM_LOCALID", "SLURM_JOB_ID")


def share(**env) -> tuple[int, int, int | None]:
    found = cluster_share({k: str(v) for k, v in env.items()})
    return found.index, found.count, found.local_rank


def refusal(**env) -> str:
    with pytest.raises(SettingsError) as caught:
        cluster_share({k: str(v) for k, v in env.items()})
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--shard auto: ")
    return message


# ------------------------------------------------------------------------------------------ which share


def test_outside_any_launcher_the_share_is_the_whole_batch():
    assert cluster_share({"HOME": "/root", "PATH": "/bin"}) == ClusterShare(1, 1, None)


def test_torchrun_rank_and_world_size_give_the_share_and_local_rank_the_gpu():
    assert share(RANK=0, WORLD_SIZE=4, LOCAL_RANK=0) == (1, 4, 0)
    assert share(RANK=5, WORLD_SIZE=8, LOCAL_RANK=1) == (6, 8, 1)  # second node of two, four GPUs each


def test_slurm_tasks_give_the_share_by_procid_and_the_gpu_by_localid():
    assert share(SLURM_PROCID=3, SLURM_NTASKS=4, SLURM_LOCALID=1) == (4, 4, 1)
    assert share(SLURM_PROCID=0, SLURM_LOCALID=0) == (1, 1, 0)  # a batch script without --ntasks: one task


@pytest.mark.parametrize("first, step, ids", [(0, 1, [0, 1, 2, 3]), (1, 1, [1, 2, 3, 4]), (10, 5, [10, 15, 20, 25])])
def test_a_slurm_array_numbers_shares_from_its_first_task_id_in_its_steps(first, step, ids):
    shares = [share(SLURM_ARRAY_TASK_ID=i, SLURM_ARRAY_TASK_COUNT=4, SLURM_ARRAY_TASK_MIN=first,
                    SLURM_ARRAY_TASK_MAX=ids[-1], SLURM_ARRAY_TASK_STEP=step, SLURM_PROCID=0, SLURM_NTASKS=1)[:2]
              for i in ids]
    assert shares == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_slurm_array_takes_precedence_over_the_task_ids_of_each_array_job():
    assert share(SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_COUNT=3, SLURM_ARRAY_TASK_MIN=0, SLURM_PROCID=0,
                 SLURM_NTASKS=1, SLURM_LOCALID=0) == (3, 3, 0)


def test_torchrun_inside_slurm_tasks_decides_when_its_world_spans_them():
    # `srun --ntasks 2 torchrun --nnodes 2 --nproc-per-node 4 ...`: torchrun's RANK is global
    assert share(RANK=6, WORLD_SIZE=8, LOCAL_RANK=2, GROUP_WORLD_SIZE=2, SLURM_PROCID=1, SLURM_NTASKS=2,
                 SLURM_LOCALID=0) == (7, 8, 2)


def test_torchrun_run_by_a_slurm_batch_script_decides_whatever_ntasks_says():
    # `sbatch --ntasks 4` whose script runs `torchrun --standalone --nproc-per-node 2` itself
    assert share(RANK=1, WORLD_SIZE=2, LOCAL_RANK=1, GROUP_WORLD_SIZE=1, SLURM_PROCID=0, SLURM_NTASKS=4) == (2, 2, 1)


def test_torchrun_inside_each_array_task_splits_that_tasks_share():
    shares = {share(SLURM_ARRAY_TASK_ID=task, SLURM_ARRAY_TASK_COUNT=3, SLURM_ARRAY_TASK_MIN=1, RANK=rank,
                    WORLD_SIZE=2, LOCAL_RANK=rank)[:2] for task in (1, 2, 3) for rank in (0, 1)}
    assert shares == {(i, 6) for i in range(1, 7)}


def test_every_share_of_a_launch_is_distinct_so_the_batch_is_covered_once():
    items = list(range(23))
    taken = [take_shard(items, parse_shard(f"{i}/{n}")) for i, n in
             (share(RANK=r, WORLD_SIZE=5)[:2] for r in range(5))]
    assert sorted(sum(taken, [])) == items


# ------------------------------------------------------------------------------------- inconsistent variables


@pytest.mark.parametrize("env, named", [
    ({"RANK": 1}, ["RANK", "WORLD_SIZE"]),
    ({"WORLD_SIZE": 2}, ["WORLD_SIZE", "RANK"]),
    ({"LOCAL_RANK": 0}, ["LOCAL_RANK", "RANK"]),
    ({"RANK": 2, "WORLD_SIZE": 2}, ["RANK=2", "WORLD_SIZE=2"]),
    ({"RANK": "one", "WORLD_SIZE": 2}, ["RANK", "one"]),
    ({"RANK": -1, "WORLD_SIZE": 2}, ["RANK=-1"]),
    ({"RANK": 0, "WORLD_SIZE": 0}, ["WORLD_SIZE=0"]),
    ({"RANK": 0, "WORLD_SIZE": 2, "LOCAL_RANK": "x"}, ["LOCAL_RANK"]),
    ({"SLURM_PROCID": 4, "SLURM_NTASKS": 4}, ["SLURM_PROCID=4", "SLURM_NTASKS=4"]),
    ({"SLURM_PROCID": 2}, ["SLURM_PROCID=2", "SLURM_NTASKS"]),
    ({"SLURM_ARRAY_TASK_ID": 3}, ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"]),
    ({"SLURM_ARRAY_TASK_ID": 4, "SLURM_ARRAY_TASK_COUNT": 4, "SLURM_ARRAY_TASK_MIN": 0}, ["SLURM_ARRAY_TASK_ID=4"]),
    ({"SLURM_ARRAY_TASK_ID": 9, "SLURM_ARRAY_TASK_COUNT": 3, "SLURM_ARRAY_TASK_MIN": 1},  # --array=1,4,9
     ["SLURM_ARRAY_TASK_ID=9", "SLURM_ARRAY_TASK_MIN=1"]),
    ({"SLURM_ARRAY_TASK_ID": 0, "SLURM_ARRAY_TASK_COUNT": 2, "SLURM_ARRAY_TASK_MIN": 1}, ["SLURM_ARRAY_TASK_ID=0"]),
    # `srun --ntasks 2 torchrun --standalone --nproc-per-node 4`: each task's world would take the same shares
    ({"RANK": 1, "WORLD_SIZE": 4, "GROUP_WORLD_SIZE": 1, "SLURM_PROCID": 1, "SLURM_NTASKS": 2},
     ["SLURM_PROCID=1", "SLURM_NTASKS=2", "GROUP_WORLD_SIZE=1"]),
    ({"RANK": 0, "WORLD_SIZE": 1, "SLURM_PROCID": 1, "SLURM_NTASKS": 2}, ["WORLD_SIZE=1", "SLURM_NTASKS=2"]),
])
def test_inconsistent_launcher_variables_are_refused_in_one_line_that_names_them(env, named):
    message = refusal(**env)
    for word in named:
        assert word in message


# ------------------------------------------------------------------------------------------------- the GPU


@pytest.mark.parametrize("device, local, gpus, expected", [
    ("auto", 1, 4, "cuda:1"), ("cuda", 3, 4, "cuda:3"), ("auto", 0, 0, "auto"), ("cpu", 1, 4, "cpu"),
    ("cuda:2", 1, 4, "cuda:2"), ("mps", 1, 0, "mps"), ("auto", None, 4, "auto"), ("auto", 1, 1, "cuda:0"),
    ("cuda", 2, 0, "cuda"),
])
def test_auto_and_cuda_become_the_local_ranks_gpu_and_anything_named_or_cpu_only_is_kept(device, local, gpus,
                                                                                        expected):
    assert device_for_share(device, local, gpus) == expected


def test_more_local_ranks_than_visible_gpus_is_refused():
    with pytest.raises(SettingsError, match="local rank 2.*2 CUDA devices"):
        device_for_share("auto", 2, 2)


def test_a_share_records_the_launcher_variables_it_was_read_from():
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1", "HOME": "/root"}
    assert cluster_share(env).record(env) == {"shard": "auto", "index": 3, "count": 4, "from": {
        "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}}
    assert cluster_share({}).record({}) == {"shard": "auto", "index": 1, "count": 1, "from": {}}


def test_only_shard_auto_reads_the_environment():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert resolve_shard("1/3", "auto", env, 2) == ("1/3", "auto")
    assert resolve_shard(None, "cuda", {"RANK": "1"}, 2) == (None, "cuda")  # not asked: not checked
    assert resolve_shard("auto", "auto", env, 2) == ("2/2", "cuda:1")
    assert resolve_shard("auto", "auto", env, 0) == ("2/2", "auto")


# ------------------------------------------------------------------------------------------- through the CLI


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def animate_batch(tmp_path_factory, tiny_bundle):
    root = tmp_path_factory.mktemp("cluster-animate")
    (root / "refs").mkdir()
    (root / "motions").mkdir()
    save_image(root / "refs" / "alice.png", make_reference_image(128))
    for name in ("a", "b", "c"):
        encode_video(root / "motions" / f"{name}.mp4", list(make_motion_frames(3, 128, 128)), 25)
    return root


def animate_args(root: Path, tiny_bundle: Path, out: Path) -> list:
    return ["animate", root / "refs", root / "motions", "-o", out, "--weights", tiny_bundle, "--size", "128",
            "--steps", "1", "--context-frames", "8", "--context-overlap", "2", "--seed", "3", "--quiet",
            "--shard", "auto", "--json"]


def test_animate_shard_auto_takes_the_share_of_its_torchrun_rank(animate_batch, tiny_bundle, tmp_path, capsys,
                                                                clean_env):
    clean_env.setenv("RANK", "1")
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("LOCAL_RANK", "1")
    code, stdout, err = run(animate_args(animate_batch, tiny_bundle, tmp_path / "out"), capsys)
    assert code == 0, err
    # the second of two shares of [a, b, c] is [b]
    summary = json.loads(stdout)
    assert [Path(i["output"]).name for i in summary["items"]] == ["alice-b.mp4"]
    share = {"shard": "auto", "index": 2, "count": 2, "from": {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}}
    assert summary["shard"] == share
    assert json.loads((tmp_path / "out" / "alice-b.mp4.json").read_text())["shard"] == share


def test_animate_shard_auto_with_inconsistent_variables_fails_in_one_line_and_writes_nothing(
        animate_batch, tiny_bundle, tmp_path, capsys, clean_env):
    clean_env.setenv("RANK", "1")
    out = tmp_path / "out"
    code, stdout, err = run(animate_args(animate_batch, tiny_bundle, out), capsys)
    assert code != 0 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and "RANK" in err and "WORLD_SIZE" in err
    assert not out.exists()


def _frame_folder(path: Path, frames: list[np.ndarray]) -> None:
    with open_writer(path, 25, frames[0].shape[1], frames[0].shape[0]) as writer:
        for frame in frames:
            writer.write(frame)


def renders(out: Path) -> dict[str, np.ndarray]:
    return {p.name: open_motion(p).read_all() for p in sorted(out.iterdir()) if p.is_dir()}


def test_two_torchrun_processes_split_a_pose_batch_once_and_match_one_process(pose_standin, tmp_path, capsys,
                                                                              clean_env):
    videos = tmp_path / "videos"
    videos.mkdir()
    for number in range(5):
        _frame_folder(videos / f"clip{number}", moving_blobs(2 + number % 2))
    common = ["--pose-model", str(pose_standin["model"]), "--format", "png", "--quiet", "--json"]

    single = tmp_path / "single"
    code, _, err = run(["pose", videos, "-o", single, *common], capsys)
    assert code == 0, err

    logs, launched = tmp_path / "logs", tmp_path / "launched"
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--redirects", "1", "--log-dir", str(logs), "-m", "magicanimate_cli", "pose",
                           str(videos), "-o", str(launched), "--shard", "auto", *common],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    summaries = [json.loads(p.read_text()) for p in sorted(logs.rglob("stdout.log"))]
    assert len(summaries) == 2
    done = [{Path(i["output"]).name for i in s["items"]} for s in summaries]
    assert all(done) and done[0].isdisjoint(done[1])  # both worked, no item twice
    expected = {f"clip{n}-pose" for n in range(5)}
    assert done[0] | done[1] == expected  # none missed
    assert sorted(renders(launched)) == sorted(expected)
    assert sorted((s["shard"]["index"], s["shard"]["count"]) for s in summaries) == [(1, 2), (2, 2)]
    for summary in summaries:
        for item in summary["items"]:
            assert json.loads(Path(item["sidecar"]).read_text())["shard"] == summary["shard"]
    for name, frames in renders(single).items():
        np.testing.assert_array_equal(renders(launched)[name], frames)
