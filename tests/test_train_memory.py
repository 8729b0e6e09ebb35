"""Memory options of a run: gradient checkpointing changes nothing but memory, bf16 keeps the trained weights and
AdamW in fp32 (and the export unrounded), cached latents equal computed ones, fp16 needs a GPU."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli, TINY_BUNDLE
from magicanimate_cli.train.batches import make_batch
from magicanimate_cli.train.export import export_states
from magicanimate_cli.train.latents import LatentCache
from magicanimate_cli.train.precision import enable_gradient_checkpointing
from train_fixtures import MA, SIZE, data, make_trainer, one_thread, settings  # noqa: F401 (fixtures)


def _gradients_and_saved_bytes(trainer) -> tuple[float, dict[str, torch.Tensor], int]:
    """One step's loss and gradients, and the bytes autograd kept for backward outside checkpointed segments."""
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        _, loss, _, _ = trainer.accumulate_gradients()
    return float(loss), {n: p.grad.clone() for n, p in trainer.state.trainable.items()}, sum(saved)


@pytest.mark.parametrize("stage", [1, 2])
def test_gradient_checkpointing_keeps_the_loss_and_gradients_and_keeps_fewer_activations(stage, data, tmp_path):
    """Stage 1 checkpoints the appearance encoder, ControlNet and UNet; stage 2 the UNet with its motion modules.
    The same step (same plan and draws) is taken without, then with checkpointing."""
    trainer = make_trainer(settings(data, tmp_path / "run", stage, batch_size=2, ref_dropout=0.5))
    draws = trainer.state.generator.get_state()
    loss, grads, kept = _gradients_and_saved_bytes(trainer)
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.state.generator.set_state(draws)
    enable_gradient_checkpointing(trainer.parts.model)
    loss_c, grads_c, kept_c = _gradients_and_saved_bytes(trainer)
    assert loss_c == pytest.approx(loss, rel=1e-6)
    assert any(float(g.abs().max()) > 0 for g in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(grads_c[name], grad, rtol=1e-5, atol=1e-9)
    assert kept_c < kept / 2, (kept_c, kept)


def test_bf16_trains_fp32_weights_with_fp32_adam_on_bf16_frozen_networks(data, tmp_path):
    trainer = make_trainer(settings(data, tmp_path / "run", mixed_precision="bf16", steps=1))
    model, parts = trainer.parts.model, trainer.parts
    before = {n: p.detach().clone() for n, p in trainer.state.trainable.items()}
    record, _ = trainer.train_step()
    assert math.isfinite(record.loss) and record.skipped is None
    assert all(p.dtype == torch.float32 for p in trainer.state.trainable.values())
    moments = [v for state in trainer.optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    assert moments and all(m.dtype == torch.float32 for m in moments)
    assert {p.dtype for p in model.unet.parameters()} == {torch.bfloat16}  # stage 1: the UNet is frozen
    assert {p.dtype for p in parts.vae.parameters()} == {torch.bfloat16}
    assert any(not torch.equal(before[n], p) for n, p in trainer.state.trainable.items())


def test_bf16_stage2_exports_the_frozen_networks_unrounded(data, tmp_path):
    """Stage 2 holds the encoder and ControlNet in bf16, but exports them as they were loaded (fp32)."""
    trainer = make_trainer(settings(data, tmp_path / "run", 2, mixed_precision="bf16"))
    assert trainer.parts.model.controlnet.conv_in.weight.dtype == torch.bfloat16
    states = export_states(trainer.parts.model, None, trainer.originals)
    loaded = load_file(MA / "densepose_controlnet" / "diffusion_pytorch_model.safetensors")
    assert set(states["densepose_controlnet"]) == set(loaded)
    assert all(torch.equal(states["densepose_controlnet"][k].float(), v.float()) for k, v in loaded.items())


def test_fp16_on_the_cpu_is_refused_in_one_line(data, tmp_path, capsys):
    code, _, err = run_cli(["train", data, "-o", tmp_path / "run", "--stage", "1", "--weights", TINY_BUNDLE,
                            "--size", str(SIZE), "--device", "cpu", "--mixed-precision", "fp16"], capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "fp16 needs a CUDA GPU" in lines[0], err
    assert not (tmp_path / "run").exists()


def test_cached_latents_equal_computed_ones_and_are_encoded_once(data, tmp_path):
    cached = make_trainer(settings(data, tmp_path / "cached", batch_size=2, cache_latents=True))
    plain = make_trainer(settings(data, tmp_path / "plain", batch_size=2))
    calls = []
    cached.parts.vae.encoder.register_forward_hook(lambda *args: calls.append(1))
    for step in range(2):
        plan = cached.plan(step)
        batch = make_batch(plan, cached.source, SIZE, SIZE)
        for got, want in zip(cached.encode(plan, batch), plain.encode(plan, batch)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        encoded = len(calls)
        cached.encode(plan, batch)
        assert len(calls) == encoded  # the second time, every latent comes from the cache
    assert len(cached.latents) == len(calls)
    got, want = cached.train_step()[0], plain.train_step()[0]
    assert got.samples == want.samples and got.loss == pytest.approx(want.loss, rel=1e-5)


def test_the_latent_cache_keeps_within_its_bound_and_encodes_a_dropped_frame_again_the_same(data, tmp_path):
    """--cache-latents is bounded: past the bound the least recently used latent goes, and encoding it again gives
    the same tensor bit for bit (the bound changes time, never a result)."""
    trainer = make_trainer(settings(data, tmp_path / "run", batch_size=2))
    plan = trainer.plan(0)
    frames = make_batch(plan, trainer.source, SIZE, SIZE).reference
    latent_bytes = 4 * (SIZE // 8) ** 2 * 4
    cache = LatentCache(trainer.parts.vae, max_bytes=2 * latent_bytes)
    first = cache.frame("a", 0, frames[0:1]).clone()
    cache.frame("b", 0, frames[1:2])
    cache.frame("a", 0, frames[0:1])  # used again: "b" is now the least recent
    cache.frame("c", 0, frames[1:2])
    assert len(cache) == 2 and cache.bytes == 2 * latent_bytes and set(cache.latents) == {("a", 0), ("c", 0)}
    cache.frame("b", 0, frames[1:2])
    assert ("a", 0) not in cache.latents
    assert torch.equal(cache.frame("a", 0, frames[0:1]), first)
