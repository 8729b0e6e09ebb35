"""Training steps change exactly what the stage trains, learn, and continue exactly from a checkpoint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from magicanimate_cli.train import checkpoint
from magicanimate_cli.train.batches import make_batch
from magicanimate_cli.train.model import encode_latents, load_parts, set_trainable
from magicanimate_cli.train.sampling import CLIP, DataIndex, FRAME, IMAGE, Mix, plan_step
from magicanimate_cli.train.schedule import inference_schedule
from train_fixtures import SIZE, data, make_trainer, one_thread, settings  # noqa: F401 (fixtures)


def _snapshot(trainer) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v.detach().clone() for k, v in trainer.parts.model.state_dict().items()}
    tensors.update({f"vae.{k}": v.detach().clone() for k, v in trainer.parts.vae.state_dict().items()})
    return tensors


@pytest.mark.parametrize("stage", [1, 2])
def test_a_stage_changes_only_its_trainable_tensors_and_leaves_every_frozen_one_bitwise(stage, data, tmp_path):
    trainer = make_trainer(settings(data, tmp_path / "run", stage, steps=2))
    before = _snapshot(trainer)
    text = trainer.parts.text.clone()
    branches = {trainer.train_step()[0].branch for _ in range(2)}
    after = _snapshot(trainer)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {f"model.{k}" for k in trainer.state.trainable}
    assert changed and changed <= trainable
    if stage == 1:
        assert any(k.startswith("model.appearance_encoder.") for k in changed)
        assert any(k.startswith("model.controlnet.") for k in changed)
    else:
        assert all(".motion_modules." in k for k in changed)
        assert branches <= {IMAGE, FRAME, CLIP}
    assert torch.equal(text, trainer.parts.text)


def test_overfitting_two_samples_at_a_fixed_timestep_halves_the_loss(data, tmp_path):
    """Stage 1 from SD 1.5 (zeroed ControlNet), a fixed batch of two frames, t = 500, lr 1e-2."""
    trainer = make_trainer(settings(data, tmp_path / "run"))
    parts = trainer.parts
    params = set_trainable(parts.model, 1)
    plan = plan_step(0, 0, trainer.data, Mix(1), 2, 1, 1)
    batch = make_batch(plan, trainer.source, SIZE, SIZE)
    latents = encode_latents(parts.vae, batch.target.flatten(0, 1)).unsqueeze(2)
    reference = encode_latents(parts.vae, batch.reference)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500, 500])
    noisy = inference_schedule().add_noise(latents, noise, t)
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    losses = []
    for _ in range(10):
        loss = F.mse_loss(parts.model(noisy, t, parts.text.expand(2, -1, -1), reference, batch.pose,
                                      torch.tensor([True, True])), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if losses[-1] <= losses[0] / 2:
            break
    assert losses[-1] <= losses[0] / 2, losses


@pytest.fixture(scope="module")
def resumed(data, tmp_path_factory):
    """One trainer: checkpoints at steps 0 and 2, then step 3 as an uninterrupted run takes it."""
    run = tmp_path_factory.mktemp("resume-run")
    trainer = make_trainer(settings(data, run, lr_warmup=4, ref_dropout=0.5, keep_checkpoints=5))
    start = trainer.save_checkpoint(run)
    trainer.train_step()
    trainer.train_step()
    middle = trainer.save_checkpoint(run)
    record, _ = trainer.train_step()
    return trainer, start, middle, record, {k: v.detach().clone() for k, v in trainer.state.trainable.items()}


def _continue(trainer, start, middle, pieces):
    """Back to the start, then restore `pieces` of the step-2 checkpoint and take step 3."""
    trainer.restore(start)
    trainer.restore(middle, pieces)
    record, _ = trainer.train_step()
    return record, {k: v.detach().clone() for k, v in trainer.state.trainable.items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_a_restored_checkpoint_continues_bit_for_bit(resumed):
    trainer, start, middle, record, weights = resumed
    again, again_weights = _continue(trainer, start, middle, checkpoint.PIECES)
    assert again == record
    assert _same(again_weights, weights)


@pytest.mark.parametrize("missing", sorted(checkpoint.PIECES))
def test_leaving_out_any_piece_of_the_checkpoint_changes_the_continuation(resumed, missing):
    """Every piece is needed: weights, optimizer moments, the warmup's position, the generator."""
    trainer, start, middle, record, weights = resumed
    again, again_weights = _continue(trainer, start, middle, checkpoint.PIECES - {missing})
    assert again != record or not _same(again_weights, weights)


def test_checkpoints_are_complete_folders_and_only_the_newest_are_kept(data, tmp_path):
    trainer = make_trainer(settings(data, tmp_path, keep_checkpoints=2))
    trainer.save_checkpoint(tmp_path)
    for _ in range(2):
        trainer.train_step()
        trainer.save_checkpoint(tmp_path)
    names = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert sorted(names) == ["step-1", "step-2"]
    assert checkpoint.latest(tmp_path).name == "step-2"
