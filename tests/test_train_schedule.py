"""Training noises with the schedule the engine samples with (not the weights' SD 1.5 scheduler file), and refuses
runs and exports made with another."""

from __future__ import annotations

import json

import pytest
import torch

from magicanimate_cli.engine.schedulers import make_scheduler
from conftest import TINY_BUNDLE
from magicanimate_cli.demo import released
from magicanimate_cli.demo.tiny_weights import build_tiny_weights
from magicanimate_cli.engine.loader import SD_DIR
from magicanimate_cli.runtime.errors import SettingsError
from magicanimate_cli.train.schedule import check_recorded, inference_schedule


def test_training_noise_is_the_inference_ddims_forward_process():
    schedule = inference_schedule()
    ddim = make_scheduler("ddim")
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(3, 4, 2, 8, 8, generator=g), torch.randn(3, 4, 2, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    assert torch.equal(schedule.alphas_cumprod, ddim.alphas_cumprod)
    assert (schedule.add_noise(latents, noise, t) - ddim.add_noise(latents, noise, t)).abs().max() <= 1e-6
    assert schedule.record == {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                               "beta_schedule": "linear", "prediction_type": "epsilon"}


def test_the_tiny_bundle_holds_sd15s_released_scheduler_config_which_training_does_not_follow(tmp_path):
    """The tests' weights carry the release's shape-free JSON files byte for byte (PNDM, scaled_linear), so every
    training test runs on what `download-weights` fetches; the demo bundle writes the same bytes; the schedule
    training records is still the inference DDIM's linear one."""
    for root in (TINY_BUNDLE, build_tiny_weights(tmp_path / "demo")):
        for name, contents in released.FILES.items():
            assert (root / SD_DIR / name).read_text() == released.file_text(contents), name
    assert json.loads((TINY_BUNDLE / SD_DIR / "scheduler" / "scheduler_config.json").read_text())["beta_schedule"] \
        == "scaled_linear"
    assert [len(released.file_text(c).encode()) for c in released.FILES.values()] == [308, 541, 472, 806]
    assert inference_schedule().record["beta_schedule"] == "linear"


def test_a_start_trained_on_another_schedule_is_refused(tmp_path):
    recorded = {**inference_schedule().record, "prediction_type": "v_prediction"}
    with pytest.raises(SettingsError, match="prediction_type"):
        check_recorded(inference_schedule(), recorded, tmp_path)
    check_recorded(inference_schedule(), dict(inference_schedule().record), tmp_path)
