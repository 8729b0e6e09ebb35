"""`magicanimate download-weights` against a hub look-alike on 127.0.0.1, with the real huggingface_hub client.

The tiny bundle is served as the three repositories (plus files the engine must not fetch: single-file
checkpoints, the SD 1.5 VAE and safety checker, pickled duplicates, fp16 copies). Nothing leaves the machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from hub_server import FakeHub, FakeRepo
from huggingface_hub import constants as hf_constants
from safetensors.torch import load, load_file, save

from magicanimate_cli.cli import main
from magicanimate_cli.download import (MA_REPO, MOTION_MODULE_REPO, POSE_REPO, SD_REPO, STATE_DIR, VAE_REPO,
                                       HubAccess, download_metric_weights)
from magicanimate_cli.evaluation.weights import METRIC_WEIGHT_FILES
from magicanimate_cli.runtime.errors import WeightsError

BUNDLE = Path(__file__).parent / "data" / "tiny-bundle"
LAYOUT = {SD_REPO: "stable-diffusion-v1-5", VAE_REPO: "sd-vae-ft-mse", MA_REPO: "MagicAnimate"}
UNET = "unet/diffusion_pytorch_model.safetensors"
CKPT = "temporal_attention/temporal_attention.ckpt"
APPEARANCE = "appearance_encoder/diffusion_pytorch_model.safetensors"
CONTROLNET = "densepose_controlnet/diffusion_pytorch_model.safetensors"
TOKEN = "hf_test_secret"
MA_COMMIT = "3d80ae8c50b289e55ee68deecc83afaab9c6a382"  # what `main` resolves to on this hub
POSE_R50, POSE_R101 = "densepose_r50_fpn_dl.torchscript", "densepose_r101_fpn_dl.torchscript"
MOTION_MODULE = "mm_sd_v15.ckpt"

# Per repository: what the engine loads with the default settings (the tiny SD unet also has a .bin).
EXPECTED = {
    SD_REPO: ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/merges.txt",
              "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
              "text_encoder/config.json", "text_encoder/model.safetensors", "unet/config.json", UNET],
    VAE_REPO: ["config.json", "diffusion_pytorch_model.safetensors"],
    MA_REPO: ["appearance_encoder/config.json", APPEARANCE, "densepose_controlnet/config.json", CONTROLNET, CKPT],
}


# ---------------------------------------------------------------------------------------------- helpers


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def half_precision(data: bytes) -> bytes:
    """The fp16 copy of a safetensors file, as diffusers publishes `*.fp16.safetensors`."""
    return save({k: v.half() for k, v in load(data).items()})


def local_files(root: Path) -> set[str]:
    """Files under `root` outside the downloader's own state folder and its sources manifest."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith((STATE_DIR, ".magicanimate/"))}


def expected_local(repos: dict[str, list[str]] = EXPECTED) -> set[str]:
    return {f"{LAYOUT[repo]}/{path}" for repo, paths in repos.items() for path in paths}


def partials(root: Path) -> list[Path]:
    return sorted((root / STATE_DIR).rglob("*.part"))


def run_cli(hub: FakeHub | None, *args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`magicanimate download-weights ARGS` through the real entry point, HF_ENDPOINT pointing at `hub`."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "MAGICANIMATE_HOME"):
            mp.delenv(name, raising=False)
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # the client reads HF_HUB_OFFLINE once, at import
        # without a hub, an endpoint that refuses connections: a stray request fails here, never leaves the machine
        mp.setenv("HF_ENDPOINT", hub.url if hub is not None else "http://127.0.0.1:9")
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(["download-weights", *map(str, args)])
                code = 0
            except SystemExit as exit_:
                code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def served() -> dict[str, dict[str, bytes]]:
    """The three repositories' files: the tiny bundle plus everything a real repository has that is not needed."""
    sd = folder_files(BUNDLE / "stable-diffusion-v1-5")
    sd.update({
        "README.md": b"# Stable Diffusion v1-5\n",
        "v1-5-pruned-emaonly.safetensors": os.urandom(50_000),
        "v1-5-pruned.ckpt": os.urandom(60_000),
        "vae/config.json": b'{"_class_name": "AutoencoderKL"}',
        "vae/diffusion_pytorch_model.safetensors": os.urandom(30_000),
        "safety_checker/config.json": b"{}",
        "safety_checker/model.safetensors": os.urandom(30_000),
        "feature_extractor/preprocessor_config.json": b"{}",
        "text_encoder/model.fp16.safetensors": half_precision(sd["text_encoder/model.safetensors"]),
        "unet/diffusion_pytorch_model.fp16.safetensors": half_precision(sd[UNET]),
    })
    vae = folder_files(BUNDLE / "sd-vae-ft-mse")
    vae["diffusion_pytorch_model.bin"] = os.urandom(20_000)
    magic = folder_files(BUNDLE / "MagicAnimate")
    magic["README.md"] = b"# MagicAnimate\n"
    pose = {"README.md": b"DensePose TorchScript\n", ".gitattributes": b"*.torchscript filter=lfs\n",
            POSE_R50: torchscript_file(2), POSE_R101: torchscript_file(3)}
    animatediff = {"README.md": b"# AnimateDiff\n", MOTION_MODULE: motion_module_file(),
                   "mm_sd_v14.ckpt": os.urandom(20_000), "mm_sd_v15_v2.ckpt": os.urandom(20_000)}
    return {SD_REPO: sd, VAE_REPO: vae, MA_REPO: magic, POSE_REPO: pose, MOTION_MODULE_REPO: animatediff}


def motion_module_file() -> bytes:
    """A motion module as AnimateDiff saves one: the motion-module entries of a temporal UNet, and a step count."""
    entries = torch.load(BUNDLE / "MagicAnimate" / CKPT, map_location="cpu", weights_only=True)
    buffer = io.BytesIO()
    torch.save({"global_step": 5, **{k: v for k, v in entries.items() if "motion_modules." in k}}, buffer)
    return buffer.getvalue()


def torchscript_file(width: int) -> bytes:
    """A real (tiny) TorchScript archive, standing in for a DensePose model file."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch.jit is deprecated, but the published DensePose models are TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(width, width)), buffer)
    return buffer.getvalue()


def make_hub(served: dict[str, dict[str, bytes]], magicanimate: dict[str, bytes | None] | None = None) -> FakeHub:
    """A fresh (not yet started) hub, MagicAnimate's `main` at MA_COMMIT; `magicanimate` replaces files of that
    repository (None removes one)."""
    files = {repo: dict(content) for repo, content in served.items()}
    for path, data in (magicanimate or {}).items():
        if data is None:
            del files[MA_REPO][path]
        else:
            files[MA_REPO][path] = data
    return FakeHub({SD_REPO: FakeRepo(files[SD_REPO]), VAE_REPO: FakeRepo(files[VAE_REPO]),
                    MA_REPO: FakeRepo(files[MA_REPO], commit=MA_COMMIT), POSE_REPO: FakeRepo(files[POSE_REPO]),
                    MOTION_MODULE_REPO: FakeRepo(files[MOTION_MODULE_REPO])})


@pytest.fixture
def hub(served):
    with make_hub(served) as running:
        yield running


@pytest.fixture(scope="module")
def shared_hub(served):
    with make_hub(served) as running:
        yield running


@pytest.fixture(scope="module")
def downloaded(shared_hub, tmp_path_factory) -> tuple[Path, tuple[int, str, str]]:
    """A weights directory fetched once with the default settings, and that run's (code, stdout, stderr)."""
    root = tmp_path_factory.mktemp("weights")
    result = run_cli(shared_hub, "--dir", root)
    assert result[0] == 0, result
    return root, result


@pytest.fixture
def copy_of_downloaded(downloaded, tmp_path) -> Path:
    root = tmp_path / "weights"
    shutil.copytree(downloaded[0], root)
    return root


# ---------------------------------------------------------------------------------------------- fresh download


def test_fresh_download_places_exactly_the_files_the_engine_loads_as_plain_verified_files(downloaded, served):
    root, _ = downloaded
    assert local_files(root) == expected_local()
    for repo, paths in EXPECTED.items():
        for path in paths:
            placed = root / LAYOUT[repo] / path
            assert not placed.is_symlink()
            assert placed.read_bytes() == served[repo][path], placed
    assert partials(root) == []


def test_downloaded_directory_loads_in_the_engine(downloaded):
    from magicanimate_cli import Animator

    animator = Animator.from_pretrained(downloaded[0])
    assert animator.max_context_frames > 0


def test_sd_unet_weights_are_fetched_when_the_checkpoint_holds_only_motion_modules(downloaded, shared_hub):
    _, (_, out, err) = downloaded
    assert "holds only part of the UNet" in err
    assert f"stable-diffusion-v1-5/{UNET}" in out
    assert shared_hub.requests_for(SD_REPO, UNET)


def test_every_repository_is_read_at_main_and_the_resolved_commits_are_recorded(downloaded, shared_hub, served):
    root, _ = downloaded
    for repo in (SD_REPO, VAE_REPO, MA_REPO):
        assert any(r.path == f"/api/models/{repo}/revision/main" for r in shared_hub.log)
    manifest = json.loads((root / ".magicanimate" / "sources.json").read_text())
    sources = manifest["sources"]
    assert set(sources) == {"sd", "vae", "magicanimate"}  # no pose model without --pose
    assert sources["magicanimate"]["repo"] == MA_REPO and sources["magicanimate"]["requested"] == "main"
    assert sources["magicanimate"]["commit"] == MA_COMMIT == shared_hub.repos[MA_REPO].commit
    for key, repo in (("sd", SD_REPO), ("vae", VAE_REPO), ("magicanimate", MA_REPO)):
        assert sources[key]["commit"] == shared_hub.repos[repo].commit
        files = sources[key]["files"]
        assert set(files) == {f"{LAYOUT[repo]}/{p}" for p in EXPECTED[repo]}
        for local, entry in files.items():
            data = served[repo][local.split("/", 1)[1]]
            assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert not any(r.path.startswith(f"/api/models/{POSE_REPO}") for r in shared_hub.log)
    assert not (root / "DensePose").exists()


def test_revision_option_pins_a_commit_and_the_manifest_says_so(hub, tmp_path):
    code, _, err = run_cli(hub, "--dir", tmp_path, "--revision", f"magicanimate={MA_COMMIT}")
    assert code == 0, err
    assert any(r.path == f"/api/models/{MA_REPO}/revision/{MA_COMMIT}" for r in hub.log)
    entry = json.loads((tmp_path / ".magicanimate" / "sources.json").read_text())["sources"]["magicanimate"]
    assert (entry["requested"], entry["commit"]) == (MA_COMMIT, MA_COMMIT)


def test_second_run_transfers_nothing_and_says_so(downloaded, shared_hub):
    root, _ = downloaded
    shared_hub.log.clear()
    code, out, err = run_cli(shared_hub, "--dir", root)
    assert code == 0, err
    assert shared_hub.file_requests() == []
    assert "Nothing to transfer" in out
    assert local_files(root) == expected_local()


def test_checkpoint_carrying_the_whole_unet_makes_the_sd_unet_weights_skipped(served, tmp_path):
    motion = torch.load(BUNDLE / "MagicAnimate" / CKPT, weights_only=True)
    spatial = load_file(BUNDLE / "stable-diffusion-v1-5" / UNET)
    merged = io.BytesIO()
    torch.save({**spatial, **motion}, merged)
    with make_hub(served, magicanimate={CKPT: merged.getvalue()}) as covering:
        code, out, err = run_cli(covering, "--dir", tmp_path)
        assert code == 0, err
        assert covering.requests_for(SD_REPO, UNET) == []
    assert "carries every UNet weight: skipping" in err
    assert "skipped" in out
    assert local_files(tmp_path) == expected_local() - {f"stable-diffusion-v1-5/{UNET}"}  # and it loads:
    # the command ends by running the engine's check_weights, so exit code 0 says the directory loads without them


def test_whole_unet_saved_with_unet_prefixes_still_gets_the_sd_unet_weights(served, tmp_path):
    """By the official loader's rule such a checkpoint contributes only its motion modules."""
    motion = torch.load(BUNDLE / "MagicAnimate" / CKPT, weights_only=True)
    spatial = load_file(BUNDLE / "stable-diffusion-v1-5" / UNET)
    prefixed = io.BytesIO()
    torch.save({f"unet.{k}": v for k, v in {**spatial, **motion}.items()}, prefixed)
    with make_hub(served, magicanimate={CKPT: prefixed.getvalue()}) as hub:
        code, _, err = run_cli(hub, "--dir", tmp_path)
        assert code == 0, err
        assert hub.requests_for(SD_REPO, UNET)
    assert "holds only part of the UNet: fetching" in err
    assert (tmp_path / "stable-diffusion-v1-5" / UNET).read_bytes() == served[SD_REPO][UNET]


def test_variant_fp16_takes_half_precision_files_where_the_repository_has_them(hub, tmp_path):
    code, out, err = run_cli(hub, "--dir", tmp_path, "--variant", "fp16", "--dry-run")
    assert code == 0, err
    listed = {line.split()[1] for line in out.splitlines() if line.startswith("│")}
    sd_fp16 = {**EXPECTED, SD_REPO: [p.replace("model.safetensors", "model.fp16.safetensors")
                                     for p in EXPECTED[SD_REPO]]}
    assert listed == expected_local(sd_fp16)  # the VAE and MagicAnimate repositories have no fp16 files


# ---------------------------------------------------------------------------------------------- failures


def test_interrupted_transfer_resumes_on_the_next_run_and_the_file_verifies(hub, served, tmp_path):
    cut = 1 << 20
    hub.cut_after(MA_REPO, APPEARANCE, cut)
    code, _, err = run_cli(hub, "--dir", tmp_path)
    final = tmp_path / "MagicAnimate" / APPEARANCE
    assert code != 0
    assert f"MagicAnimate/{APPEARANCE}" in err and "run again to resume" in err
    assert not final.exists()
    assert [p.stat().st_size for p in partials(tmp_path)] == [cut]

    hub.restore()
    hub.log.clear()
    code, out, err = run_cli(hub, "--dir", tmp_path)
    assert code == 0, err
    transfers = [r for r in hub.requests_for(MA_REPO, APPEARANCE) if r.method == "GET" and r.status in (200, 206)]
    assert [(r.range, r.status, r.body_bytes) for r in transfers] == [
        (f"bytes={cut}-", 206, len(served[MA_REPO][APPEARANCE]) - cut)]
    assert final.read_bytes() == served[MA_REPO][APPEARANCE]
    assert "resumed" in out
    assert partials(tmp_path) == []


def test_corrupted_files_are_rejected_by_name_and_nothing_is_placed_for_them(hub, tmp_path):
    hub.make_corrupt(MA_REPO, CONTROLNET)  # an LFS file: checked against its sha256
    hub.make_corrupt(MA_REPO, "densepose_controlnet/config.json")  # a small file: checked against its git blob id
    code, out, err = run_cli(hub, "--dir", tmp_path)
    assert code != 0
    assert "2 of 17 files could not be placed" in err
    assert "MagicAnimate/densepose_controlnet/config.json: git blob id mismatch" in err
    assert f"failed MagicAnimate/{CONTROLNET}" in err and "sha256 mismatch" in out
    assert not (tmp_path / "MagicAnimate" / CONTROLNET).exists()
    assert not (tmp_path / "MagicAnimate" / "densepose_controlnet" / "config.json").exists()
    assert partials(tmp_path) == []
    assert (tmp_path / "MagicAnimate" / APPEARANCE).is_file()  # the other files were still placed


def test_repository_refusing_access_exits_with_the_token_message(hub, tmp_path):
    hub.make_private(VAE_REPO, TOKEN)
    code, _, err = run_cli(hub, "--dir", tmp_path)
    assert code != 0
    assert f"{VAE_REPO}@main: access refused (401)" in err
    assert "--token or HF_TOKEN" in err
    assert hub.file_requests() == []


@pytest.mark.parametrize("how", ["option", "environment"])
def test_token_from_the_option_or_hf_token_opens_a_private_repository(hub, tmp_path, how):
    hub.make_private(VAE_REPO, TOKEN)
    args, env = (["--token", TOKEN], {}) if how == "option" else ([], {"HF_TOKEN": TOKEN})
    code, out, err = run_cli(hub, "--dir", tmp_path, "--dry-run", *args, env=env)
    assert code == 0, err
    assert "sd-vae-ft-mse/diffusion_pytorch_model.safetensors" in out


def test_file_missing_on_the_server_exits_naming_it(hub, tmp_path):
    hub.make_missing(MA_REPO, "densepose_controlnet/config.json")
    code, _, err = run_cli(hub, "--dir", tmp_path)
    assert code != 0
    assert "MagicAnimate/densepose_controlnet/config.json: not found on the server (404" in err
    assert not (tmp_path / "MagicAnimate" / "densepose_controlnet" / "config.json").exists()


def test_file_absent_from_the_repository_exits_naming_it_before_any_transfer(served, tmp_path):
    with make_hub(served, magicanimate={CKPT: None}) as partial_hub:
        code, _, err = run_cli(partial_hub, "--dir", tmp_path)
        assert partial_hub.file_requests() == []
    assert code != 0
    assert f"{MA_REPO}@main: {CKPT} not found in the repository" in err


def test_unknown_repository_exits_naming_it(hub, tmp_path):
    code, _, err = run_cli(hub, "--dir", tmp_path, "--vae-repo", "nobody/no-such-vae", "--dry-run")
    assert code != 0
    assert "nobody/no-such-vae@main: repository not found" in err


def test_unknown_revision_exits_naming_the_repository(hub, tmp_path):
    code, _, err = run_cli(hub, "--dir", tmp_path, "--revision", "magicanimate=v9")
    assert code != 0
    assert f"{MA_REPO}@v9: revision not found" in err


# ---------------------------------------------------------------------------------------------- dry run


def test_dry_run_lists_what_would_be_fetched_with_the_total_and_transfers_nothing(hub, served, tmp_path):
    code, out, err = run_cli(hub, "--dir", tmp_path / "w", "--dry-run")
    assert code == 0, err
    for local in expected_local():
        assert local in out
    certain = sum(len(served[repo][p]) for repo, paths in EXPECTED.items() for p in paths if p != UNET)
    from rich.filesize import decimal

    assert f"Would transfer {decimal(certain)}, plus {decimal(len(served[SD_REPO][UNET]))} if" in out
    assert hub.file_requests() == []
    assert not (tmp_path / "w").exists()


def test_default_directory_is_magicanimate_home(hub, tmp_path):
    code, out, err = run_cli(hub, "--dry-run", env={"MAGICANIMATE_HOME": str(tmp_path / "home")})
    assert code == 0, err
    assert f"into {tmp_path / 'home'}" in out


# ---------------------------------------------------------------------------------------------- --check / offline


def test_check_passes_on_a_complete_directory_without_the_network(downloaded, shared_hub):
    shared_hub.log.clear()
    code, out, err = run_cli(None, "--dir", downloaded[0], "--check")
    assert code == 0, err
    assert "complete and the engine can load it" in out
    assert f"magicanimate: {MA_REPO}@main = commit {MA_COMMIT}" in out
    assert str(downloaded[0] / ".magicanimate" / "sources.json") in out
    assert shared_hub.log == []


def test_check_fails_naming_each_truncated_or_missing_file(copy_of_downloaded):
    truncated = copy_of_downloaded / "MagicAnimate" / CONTROLNET
    with truncated.open("r+b") as handle:
        handle.truncate(truncated.stat().st_size // 2)
    missing = copy_of_downloaded / "stable-diffusion-v1-5" / "text_encoder" / "model.safetensors"
    missing.unlink()
    short_text = copy_of_downloaded / "stable-diffusion-v1-5" / "tokenizer" / "merges.txt"  # not parsed by the engine
    short_text.write_bytes(short_text.read_bytes()[:10])
    code, out, err = run_cli(None, "--dir", copy_of_downloaded, "--check")
    assert code != 0
    assert "3 problem(s)" in err
    for damaged in (truncated, missing, short_text):
        assert str(damaged) in out
    assert f"{short_text}: 10 bytes" in out


def test_offline_mode_on_a_complete_directory_succeeds_without_requests(downloaded, shared_hub):
    shared_hub.log.clear()
    code, _, err = run_cli(shared_hub, "--dir", downloaded[0], env={"HF_HUB_OFFLINE": "1"})
    assert code == 0, err
    assert "HF_HUB_OFFLINE is set: nothing fetched" in err
    assert shared_hub.log == []


def test_offline_mode_on_an_incomplete_directory_fails_naming_what_is_missing(hub, tmp_path):
    code, _, err = run_cli(hub, "--dir", tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert code != 0
    assert "HF_HUB_OFFLINE is set" in err and str(tmp_path / "stable-diffusion-v1-5") in err
    assert hub.log == []


# ---------------------------------------------------------------------------------------------- --metrics


def test_metrics_from_a_mirror_places_files_and_rejects_one_of_the_wrong_size(hub, tmp_path):
    hub.static = {spec.filename: hashlib.sha256(spec.filename.encode()).digest() * 40 for spec in METRIC_WEIGHT_FILES}
    code, out, err = run_cli(hub, "--dir", tmp_path, "--metrics", "--metrics-mirror", f"{hub.url}/static")
    checked = [s for s in METRIC_WEIGHT_FILES if s.size is not None or s.sha256 is not None]
    unchecked = [s for s in METRIC_WEIGHT_FILES if s not in checked]
    assert code == (1 if checked else 0), err
    for spec in unchecked:
        assert spec.path(tmp_path).read_bytes() == hub.static[spec.filename]
    for spec in checked:
        assert not spec.path(tmp_path).exists()
        assert f"metrics/{spec.filename}" in err or f"metrics/{spec.filename}" in out
    assert partials(tmp_path) == []
    code, out, _ = run_cli(None, "--dir", tmp_path, "--metrics", "--check")
    assert code == (1 if checked else 0)
    for spec in checked:
        assert f"{spec.path(tmp_path)}: file not found" in out


def test_metric_file_with_a_known_sha256_is_verified_then_placed_and_not_fetched_twice(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    good = os.urandom(70_000)
    hub.static = {"toy.pth": good, "bad.pth": good[:-1] + b"\0"}
    template = METRIC_WEIGHT_FILES[0]
    spec = dataclasses.replace(template, filename="toy.pth", size=len(good), sha256=hashlib.sha256(good).hexdigest())
    bad = dataclasses.replace(spec, filename="bad.pth")
    access = HubAccess(endpoint=hub.url)

    report = download_metric_weights(tmp_path, access, mirror=f"{hub.url}/static", specs=[spec])
    assert spec.path(tmp_path).read_bytes() == good and report.transferred == len(good)
    again = download_metric_weights(tmp_path, access, mirror=f"{hub.url}/static", specs=[spec])
    assert again.transferred == 0 and [f.status for f in again.files] == ["present"]
    with pytest.raises(WeightsError, match=r"metrics/bad\.pth: sha256 mismatch"):
        download_metric_weights(tmp_path, access, mirror=f"{hub.url}/static", specs=[bad])
    assert not bad.path(tmp_path).exists()


def test_help_lists_every_option_with_its_default():
    code, out, _ = run_cli(None, "--help")
    text = " ".join(out.split())
    assert code == 0
    for option in ("--dir", "--sd-repo", "--vae-repo", "--magicanimate-repo", "--revision", "--variant", "--token",
                   "--check", "--dry-run", "--pose", "--pose-backbone", "--motion-module", "--metrics",
                   "--metrics-mirror"):
        assert option in text
    assert text.count("[default:") == 14


# ---------------------------------------------------------------------------------------------- --pose


def test_check_without_a_manifest_says_the_sources_are_not_recorded(tmp_path):
    root = tmp_path / "weights"
    shutil.copytree(BUNDLE, root)
    code, out, err = run_cli(None, "--dir", root, "--check")
    assert code == 0, err
    assert "sources: not recorded" in out


@pytest.fixture(scope="module")
def downloaded_with_pose(shared_hub, tmp_path_factory) -> tuple[Path, tuple[int, str, str]]:
    root = tmp_path_factory.mktemp("weights-pose")
    result = run_cli(shared_hub, "--dir", root, "--pose")
    assert result[0] == 0, result
    return root, result


def test_pose_places_the_densepose_model_verified_next_to_the_animation_weights(downloaded_with_pose, served):
    root, (_, out, _) = downloaded_with_pose
    assert local_files(root) == expected_local() | {f"DensePose/{POSE_R50}"}
    assert (root / "DensePose" / POSE_R50).read_bytes() == served[POSE_REPO][POSE_R50]
    assert f"DensePose/{POSE_R50}" in out
    entry = json.loads((root / ".magicanimate" / "sources.json").read_text())["sources"]["densepose"]
    data = served[POSE_REPO][POSE_R50]
    assert (entry["repo"], entry["requested"]) == (POSE_REPO, "main")
    assert entry["files"] == {f"DensePose/{POSE_R50}": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    with warnings.catch_warnings():  # torch.jit is deprecated; the published models are TorchScript all the same
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(root / "DensePose" / POSE_R50))
    assert model(torch.ones(1, 2)).shape == (1, 2)


def test_pose_check_verifies_the_model_and_names_it_when_truncated(downloaded_with_pose, tmp_path):
    root = tmp_path / "weights"
    shutil.copytree(downloaded_with_pose[0], root)
    code, out, err = run_cli(None, "--dir", root, "--check", "--pose")
    assert code == 0, err
    assert "(with the DensePose model)" in out and f"densepose: {POSE_REPO}@main = commit" in out
    model = root / "DensePose" / POSE_R50
    model.write_bytes(model.read_bytes()[:-100])
    code, out, err = run_cli(None, "--dir", root, "--check", "--pose")
    assert code != 0
    assert f"{model}: not a whole TorchScript archive" in out
    code, out, err = run_cli(None, "--dir", root, "--check", "--pose", "--pose-backbone", "r101")
    assert code != 0 and f"{root / 'DensePose' / POSE_R101}: file not found" in err


def test_pose_r101_dry_run_lists_only_that_model(hub, tmp_path):
    code, out, err = run_cli(hub, "--dir", tmp_path, "--pose", "--pose-backbone", "r101", "--dry-run")
    assert code == 0, err
    assert f"DensePose/{POSE_R101}" in out and POSE_R50 not in out
    assert hub.file_requests() == []


def test_pose_model_transfer_resumes_and_a_corrupt_one_is_refused(hub, served, tmp_path):
    cut = 1000
    hub.cut_after(POSE_REPO, POSE_R50, cut)
    code, _, err = run_cli(hub, "--dir", tmp_path, "--pose")
    assert code != 0 and f"DensePose/{POSE_R50}" in err and "run again to resume" in err
    hub.restore()
    hub.log.clear()
    code, _, err = run_cli(hub, "--dir", tmp_path, "--pose")
    assert code == 0, err
    transfers = [r for r in hub.requests_for(POSE_REPO, POSE_R50) if r.method == "GET" and r.status in (200, 206)]
    assert [(r.range, r.status) for r in transfers] == [(f"bytes={cut}-", 206)]
    assert (tmp_path / "DensePose" / POSE_R50).read_bytes() == served[POSE_REPO][POSE_R50]

    hub.make_corrupt(POSE_REPO, POSE_R101)
    code, out, err = run_cli(hub, "--dir", tmp_path, "--pose", "--pose-backbone", "r101")
    assert code != 0 and "sha256 mismatch" in out + err
    assert not (tmp_path / "DensePose" / POSE_R101).exists()


def test_pose_backbone_without_pose_is_a_usage_error(tmp_path):
    code, _, err = run_cli(None, "--dir", tmp_path, "--pose-backbone", "r101")
    assert code != 0 and "--pose-backbone r101 applies only with --pose" in err


def test_animate_sidecar_names_the_commits_the_weights_came_from(downloaded, tmp_path):
    from conftest import cli_exit_code
    from media_helpers import encode_video, save_image

    from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image

    root, _ = downloaded
    ref = save_image(tmp_path / "ref.png", make_reference_image(128))
    motion = encode_video(tmp_path / "motion.mp4", list(make_motion_frames(3, 128, 128)), 25)
    out = tmp_path / "out.mp4"
    code = cli_exit_code(["animate", ref, motion, "-o", out, "--weights", root, "--size", "128", "--steps", "1",
                          "--context-frames", "8", "--context-overlap", "2", "--seed", "1", "--quiet"])
    assert code == 0
    sources = json.loads((tmp_path / "out.mp4.json").read_text())["weights_sources"]
    assert sources["magicanimate"] == {"repo": MA_REPO, "requested": "main", "commit": MA_COMMIT}
    assert set(sources) == {"sd", "vae", "magicanimate"}


# ---------------------------------------------------------------------------------------------- --motion-module


def test_motion_module_places_animatediffs_file_verified_and_records_its_source(shared_hub, served, tmp_path):
    code, out, err = run_cli(shared_hub, "--dir", tmp_path, "--motion-module")
    assert code == 0, err
    data = served[MOTION_MODULE_REPO][MOTION_MODULE]
    assert local_files(tmp_path) == expected_local() | {f"animatediff/{MOTION_MODULE}"}  # not v14 nor v15_v2
    assert (tmp_path / "animatediff" / MOTION_MODULE).read_bytes() == data
    assert f"animatediff/{MOTION_MODULE}" in out
    entry = json.loads((tmp_path / ".magicanimate" / "sources.json").read_text())["sources"]["animatediff"]
    assert (entry["repo"], entry["requested"]) == (MOTION_MODULE_REPO, "main")
    assert entry["files"] == {f"animatediff/{MOTION_MODULE}": {"bytes": len(data),
                                                                "sha256": hashlib.sha256(data).hexdigest()}}
    code, out, err = run_cli(None, "--dir", tmp_path, "--check", "--motion-module")
    assert code == 0, err
    assert "(with the AnimateDiff motion module)" in out and f"animatediff: {MOTION_MODULE_REPO}@main" in out


def test_motion_module_check_names_a_missing_truncated_or_foreign_file(copy_of_downloaded):
    root = copy_of_downloaded
    module = root / "animatediff" / MOTION_MODULE
    code, _, err = run_cli(None, "--dir", root, "--check", "--motion-module")
    assert code != 0 and f"{module}: file not found; run `magicanimate download-weights --motion-module`" in err
    module.parent.mkdir()
    data = motion_module_file()
    module.write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(None, "--dir", root, "--check", "--motion-module")
    assert code != 0 and f"{module}: cannot read the weights" in err
    torch.save({"conv_in.weight": torch.zeros(2, 2)}, module)
    code, _, err = run_cli(None, "--dir", root, "--check", "--motion-module")
    assert code != 0 and f"{module}: holds no motion-module weights" in err


def test_motion_module_dry_run_lists_it_and_revision_pins_its_repository(hub, tmp_path):
    code, out, err = run_cli(hub, "--dir", tmp_path, "--motion-module", "--dry-run", "--revision", "animatediff=v9")
    assert code != 0 and f"{MOTION_MODULE_REPO}@v9: revision not found" in err
    code, out, err = run_cli(hub, "--dir", tmp_path, "--motion-module", "--dry-run")
    assert code == 0, err
    assert f"animatediff/{MOTION_MODULE}" in out and "mm_sd_v14" not in out
    assert hub.file_requests() == []


def test_motion_module_with_metrics_is_refused(tmp_path):
    code, _, err = run_cli(None, "--dir", tmp_path, "--motion-module", "--metrics")
    assert code != 0 and "--motion-module and --metrics: fetch one kind at a time" in err
