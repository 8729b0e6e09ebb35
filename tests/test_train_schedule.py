"""Training noises with the schedule the engine samples with, and refuses weights or runs made with another."""

from __future__ import annotations

import json

import pytest
import torch

from magicanimate_cli.engine.schedulers import make_scheduler
from magicanimate_cli.runtime.errors import SettingsError, WeightsError
from magicanimate_cli.train.schedule import check_recorded, check_weights_schedule, inference_schedule


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


def test_weights_whose_scheduler_config_differs_are_refused(tmp_path):
    config = tmp_path / "scheduler_config.json"
    config.write_text(json.dumps({"beta_schedule": "scaled_linear", "beta_start": 0.00085}))
    with pytest.raises(WeightsError, match="beta_schedule"):
        check_weights_schedule(inference_schedule(), config)
    config.write_text(json.dumps({"beta_schedule": "linear", "_class_name": "PNDMScheduler"}))
    check_weights_schedule(inference_schedule(), config)  # the class is not the schedule


def test_a_start_trained_on_another_schedule_is_refused(tmp_path):
    recorded = {**inference_schedule().record, "prediction_type": "v_prediction"}
    with pytest.raises(SettingsError, match="prediction_type"):
        check_recorded(inference_schedule(), recorded, tmp_path)
    check_recorded(inference_schedule(), dict(inference_schedule().record), tmp_path)
