"""`--animation-weights DIR`: a folder in the `MagicAnimate/` layout (a fine-tune, a training run's export) used
instead of `<weights>/MagicAnimate/`, with SD 1.5 and the VAE from `--weights`; through the real commands on real
files with the tiny official-layout model."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import cli_exit_code, run_cli
from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image
from magicanimate_cli.engine.loader import check_weights
from magicanimate_cli.engine.sources import record_sources
from media_helpers import encode_video, save_image

FAST = ["--size", "128", "--steps", "1", "--context-frames", "8", "--context-overlap", "2", "--seed", "3",
        "--device", "cpu", "--quiet"]
CONTROLNET = "densepose_controlnet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_bundle) -> dict[str, Path]:
    """The bundle's own MagicAnimate part copied elsewhere; a copy whose ControlNet weights are perturbed; a copy
    without its temporal checkpoint; a reference and a DensePose clip."""
    root = tmp_path_factory.mktemp("animation-weights")
    own, perturbed, partial = root / "own", root / "perturbed", root / "partial"
    for folder in (own, perturbed, partial):
        shutil.copytree(tiny_bundle / "MagicAnimate", folder)
    state = load_file(str(perturbed / CONTROLNET))
    generator = torch.Generator().manual_seed(0)
    save_file({k: v + 0.05 * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in state.items()},
              str(perturbed / CONTROLNET))
    shutil.rmtree(partial / "temporal_attention")
    return {"own": own, "perturbed": perturbed, "partial": partial, "weights": tiny_bundle,
            "ref": save_image(root / "ref.png", make_reference_image(128)),
            "motion": encode_video(root / "motion.mp4", list(make_motion_frames(4, 128, 128)), Fraction(25))}


def animate(folders, output: Path, *extra, weights: Path | None = None) -> list:
    return ["animate", folders["ref"], folders["motion"], "-o", output, "--weights", weights or folders["weights"],
            *FAST, *extra]


@pytest.fixture(scope="module")
def baseline(folders, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("baseline") / "base.mp4"
    assert cli_exit_code(animate(folders, output)) == 0
    return output


def test_the_bundles_own_part_from_another_folder_gives_the_identical_video(folders, baseline, tmp_path, capsys):
    output = tmp_path / "own.mp4"
    code, _, err = run_cli(animate(folders, output, "--animation-weights", folders["own"]), capsys)
    assert code == 0, err
    assert output.read_bytes() == baseline.read_bytes()


def test_other_controlnet_weights_change_the_video_and_the_sidecar_names_the_folder(folders, baseline, tmp_path,
                                                                                    capsys):
    weights = tmp_path / "weights"  # the base, as download-weights leaves it (with its sources record)
    shutil.copytree(folders["weights"], weights)
    record_sources(weights, {key: {"repo": f"org/{key}", "requested": "main", "commit": "c0ffee", "files": []}
                             for key in ("sd", "vae", "magicanimate")})
    output = tmp_path / "tuned.mp4"
    code, _, err = run_cli(animate(folders, output, "--animation-weights", folders["perturbed"], weights=weights),
                           capsys)
    assert code == 0, err
    assert output.read_bytes() != baseline.read_bytes()
    sidecar = json.loads((tmp_path / "tuned.mp4.json").read_text())
    assert sidecar["animation_weights"] == sidecar["settings"]["animation_weights"] == str(folders["perturbed"])
    read = {w["path"] for w in sidecar["weights"]}
    assert str(folders["perturbed"] / CONTROLNET) in read
    assert not any(str(weights / "MagicAnimate") in p for p in read)
    assert set(sidecar["weights_sources"]) == {"sd", "vae"}  # the release's commit would misname the part


@pytest.mark.parametrize("case", ["missing part", "no folder"])
def test_a_folder_missing_a_part_is_one_line_naming_it_and_writes_nothing(folders, tmp_path, capsys, case):
    folder = folders["partial"] if case == "missing part" else tmp_path / "nowhere"
    output = tmp_path / "out.mp4"
    code, out, err = run_cli(animate(folders, output, "--animation-weights", folder), capsys)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {folder}: --animation-weights folder"), err
    if case == "missing part":
        assert "temporal_attention/temporal_attention.ckpt" in lines[0]
    assert not output.exists() and not (tmp_path / "out.mp4.json").exists()


def test_check_weights_reads_the_part_from_the_folder(folders):
    assert check_weights(folders["weights"], folders["own"]) == []
    problems = check_weights(folders["weights"], folders["partial"])
    assert len(problems) == 1 and str(folders["partial"]) in problems[0] and "temporal_attention" in problems[0]


def test_the_python_api_loads_the_folders_controlnet(folders):
    from magicanimate_cli import Animator

    animator = Animator.from_pretrained(folders["weights"], animation_weights=folders["perturbed"])
    expected = load_file(str(folders["perturbed"] / CONTROLNET))
    loaded = animator.components.controlnet.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_fuse_long_refuses_to_resume_with_other_animation_weights(folders, tmp_path, capsys):
    checkpoint = tmp_path / "run.ckpt"
    args = ["fuse-long", folders["ref"], folders["motion"], "-o", tmp_path / "long.mp4", "--weights",
            folders["weights"], *FAST]
    code, _, err = run_cli([*args, "--animation-weights", folders["own"], "--checkpoint", checkpoint], capsys)
    assert code == 0, err
    for other in (["--animation-weights", folders["perturbed"]], []):
        code, _, err = run_cli([*args, *other, "--resume", checkpoint], capsys)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and "animation-weights" in lines[0], err


def test_the_fingerprint_knows_the_animation_weights_by_content_not_by_place(folders, tmp_path):
    from magicanimate_cli.animate.settings import AnimateSettings
    from magicanimate_cli.long.fingerprint import animation_weights_digest

    copy = tmp_path / "copy"
    shutil.copytree(folders["own"], copy)

    def digest(folder: Path) -> str:
        return animation_weights_digest(AnimateSettings(weights=folders["weights"], animation_weights=folder))

    assert digest(copy) == digest(folders["own"]) != digest(folders["perturbed"])


def test_serve_refuses_animation_weights_with_its_demo_model(folders):
    from magicanimate_cli.runtime.errors import SettingsError
    from magicanimate_cli.serve.settings import ServeSettings

    with pytest.raises(SettingsError, match="--animation-weights"):
        ServeSettings(demo=True, animation_weights=folders["own"]).validate()
