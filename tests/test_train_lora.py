"""`train --lora RANK`: only the adapters train, the export merges them into the released layout (W + B·A·scale,
the same keys and shapes as a plain run's export), the adapters are kept beside it, and resume stays exact."""

from __future__ import annotations

import pytest
import torch

from train_fixtures import MA, data, make_trainer, one_thread, settings  # noqa: F401 (fixtures)
from magicanimate_cli.train.export import export_states, write_export
from magicanimate_cli.train.lora import plain_state_dict

pytest.importorskip("peft")


def _stage2(data, run, **kw):
    return settings(data, run, stage=2, lora=2, joint=(0.0, 0.0), **kw)


@pytest.fixture(scope="module")
def stepped(data, tmp_path_factory):
    """A stage-2 LoRA trainer after one step, with the parameters it started from."""
    trainer = make_trainer(_stage2(data, tmp_path_factory.mktemp("lora-run")))
    before = {k: v.detach().clone() for k, v in trainer.parts.model.state_dict().items()}
    trainer.train_step()
    return trainer, before


def test_only_the_adapters_train(stepped):
    trainer, before = stepped
    after = trainer.parts.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {n for n, p in trainer.parts.model.named_parameters() if p.requires_grad}
    assert changed <= trainable and any(".lora_B." in k for k in changed)  # A moves too (weight decay)
    assert all(".lora_" in n and ".motion_modules." in n for n in trainable)


def test_the_export_merges_each_adapter_as_base_plus_b_a_scale(stepped):
    trainer, _ = stepped
    model = trainer.parts.model
    merged = export_states(model, None)["temporal_attention/temporal_attention.ckpt"]
    layers = [(n, m) for n, m in model.unet.named_modules() if hasattr(m, "lora_A")]
    assert layers
    for name, layer in layers:
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        expected = layer.base_layer.weight + (b @ a) * layer.scaling["default"]
        assert torch.allclose(merged[f"{name}.weight"], expected, atol=1e-7)
        assert not torch.equal(expected, layer.base_layer.weight)  # the step moved B off zero


def test_the_export_has_the_plain_exports_keys_and_shapes_and_keeps_the_adapters(stepped, data, tmp_path):
    trainer, _ = stepped
    plain = make_trainer(settings(data, tmp_path / "plain", stage=2, joint=(0.0, 0.0)))
    shapes = lambda states: {p: {k: tuple(v.shape) for k, v in s.items()} for p, s in states.items()}  # noqa: E731
    assert shapes(export_states(trainer.parts.model, None)) == shapes(export_states(plain.parts.model, None))
    parts = trainer.parts
    export = write_export(tmp_path / "run", parts.model, parts.motion_state, parts.appearance_config,
                          parts.controlnet_config, {"stage": 2})
    adapters = export / "lora" / "temporal_attention"
    assert (adapters / "adapter_model.safetensors").is_file() and (adapters / "adapter_config.json").is_file()
    assert not (export / "lora" / "appearance_encoder").exists()


def test_a_resumed_lora_run_equals_an_uninterrupted_one(data, tmp_path):
    whole = make_trainer(_stage2(data, tmp_path / "whole"))
    for _ in range(2):
        whole.train_step()
    first = make_trainer(_stage2(data, tmp_path / "split"))
    first.train_step()
    checkpoint = first.save_checkpoint(tmp_path / "split")
    resumed = make_trainer(_stage2(data, tmp_path / "split"))
    assert resumed.restore(checkpoint) == 1
    resumed.train_step()
    a, b = plain_state_dict(whole.parts.model.unet), plain_state_dict(resumed.parts.model.unet)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stage1_lora_without_from_is_refused_in_one_line(data, tmp_path):
    from magicanimate_cli.runtime.errors import SettingsError

    with pytest.raises(SettingsError, match="--lora in stage 1 needs --from"):
        settings(data, tmp_path / "run", stage=1, lora=2).validate()
    settings(data, tmp_path / "run", stage=1, lora=2, start_from=MA).validate()


def test_lora_under_bf16_and_checkpointing_merges_into_the_fp32_originals(data, tmp_path):
    """With --mixed-precision the adapted base weights are held in bf16; the export adds the adapters to the fp32
    weights the run loaded, so nothing in it is rounded."""
    trainer = make_trainer(_stage2(data, tmp_path / "run", mixed_precision="bf16", gradient_checkpointing=True))
    trainer.train_step()
    merged = export_states(trainer.parts.model, None, trainer.originals)["temporal_attention/temporal_attention.ckpt"]
    layers = [(n, m) for n, m in trainer.parts.model.unet.named_modules() if hasattr(m, "lora_A")]
    assert layers and all(v.dtype == torch.float32 for v in merged.values())
    for name, layer in layers:
        assert layer.base_layer.weight.dtype == torch.bfloat16
        base = trainer.originals[f"unet.{name}.base_layer.weight"]
        delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]
        assert torch.allclose(merged[f"{name}.weight"], base + delta)
