"""The training model is the engine's model: same networks, same reference attention, same numbers.

Tiny bundle, CPU, fp32. The engine side is the session's `Animator` (the parity tests' instance), driven through
the sampler's own `reference_features` and `predict_windows`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_BUNDLE

from magicanimate_cli.engine.sampler import Conditioning, StepStats, predict_windows, reference_features
from magicanimate_cli.engine.sampler_config import SamplerConfig
from magicanimate_cli.train.model import load_parts, set_trainable, trainable_names

from train_fixtures import OneThread

MA = TINY_BUNDLE / "MagicAnimate"
FRAMES, SIZE = 4, 128
TOL = 1e-5
"""Equal up to the order of floating-point operations: the engine runs the two guidance copies as one batch of
rows, training one copy; equally valid fp32 computations of the same forward differ by ~6e-6 at 128 px (see
tests/data/parity/FINDINGS.md), a wrong path by 1e-2 or more."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with OneThread():
        yield


@pytest.fixture(scope="module")
def stage2():
    """Stage 2 started from the tiny bundle's own MagicAnimate parts: the model the engine loads."""
    return load_parts(2, TINY_BUNDLE, start_from=MA)


@pytest.fixture(scope="module")
def stage1():
    return load_parts(1, TINY_BUNDLE)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    h = SIZE // 8
    pose = torch.randint(0, 256, (FRAMES, SIZE, SIZE, 3), generator=g, dtype=torch.uint8)
    return {"noisy": torch.randn(1, 4, FRAMES, h, h, generator=g), "reference": torch.randn(1, 4, h, h, generator=g),
            "pose_uint8": pose, "pose": (pose.permute(0, 3, 1, 2).float() / 255.0)[None], "t": torch.tensor([667])}


def _engine_halves(animator, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's [unconditional, conditional] noise predictions for one K-frame window at t."""
    cond = Conditioning(animator.text_embedding(), inputs["reference"], inputs["pose_uint8"].numpy())
    config = SamplerConfig(context_frames=FRAMES, context_overlap=0)
    t = inputs["t"][0]
    features = reference_features(animator.models, cond, [t])[0]
    noise_sum, weight_sum = predict_windows(animator.models, cond, inputs["noisy"], t, config.window_plan(FRAMES),
                                            [0], config, StepStats(), features)
    pred = noise_sum / weight_sum[None, None, :, None, None]
    return pred[:1], pred[1:]


def _train_prediction(parts, inputs, keep: bool) -> torch.Tensor:
    with torch.no_grad():
        return parts.model(inputs["noisy"], inputs["t"], parts.text, inputs["reference"], inputs["pose"],
                           torch.tensor([keep]))


def test_training_forward_equals_the_engines_conditional_prediction(stage2, animator, inputs):
    _, engine_cond = _engine_halves(animator, inputs)
    ours = _train_prediction(stage2, inputs, keep=True)
    assert (ours - engine_cond).abs().max() <= TOL


def test_dropped_reference_prediction_equals_the_engines_unconditional_half(stage2, animator, inputs):
    engine_uncond, engine_cond = _engine_halves(animator, inputs)
    ours = _train_prediction(stage2, inputs, keep=False)
    assert (ours - engine_uncond).abs().max() <= TOL
    assert (ours - engine_cond).abs().max() > 1e-3  # the reference matters: the two halves differ


def test_each_sample_of_a_batch_reads_its_own_reference_and_drops_it_alone(stage2, inputs):
    """A batch of two different samples, the second dropped, gives what each gives alone."""
    g = torch.Generator().manual_seed(1)
    other = {**inputs, "noisy": torch.randn(inputs["noisy"].shape, generator=g),
             "reference": torch.randn(inputs["reference"].shape, generator=g), "t": torch.tensor([250])}

    def batch(keep: list[bool]) -> torch.Tensor:
        with torch.no_grad():
            return stage2.model(torch.cat([inputs["noisy"], other["noisy"]]), torch.tensor([667, 250]),
                                stage2.text.expand(2, -1, -1), torch.cat([inputs["reference"], other["reference"]]),
                                torch.cat([inputs["pose"], other["pose"]]), torch.tensor(keep))

    first = _train_prediction(stage2, inputs, True)[0]
    second_kept, second_dropped = (_train_prediction(stage2, other, keep)[0] for keep in (True, False))
    kept, mixed = batch([True, True]), batch([True, False])
    assert (kept[0] - first).abs().max() <= TOL and (kept[1] - second_kept).abs().max() <= TOL
    assert (mixed[0] - first).abs().max() <= TOL and (mixed[1] - second_dropped).abs().max() <= TOL
    assert (second_kept - second_dropped).abs().max() > 1e-3


def test_stage1_unet_on_one_frame_is_sd15s_image_unet(stage1, inputs):
    """Stage 1 leaves the temporal layers out: with the reference dropped, the training forward is SD 1.5's image
    UNet (diffusers' UNet2DConditionModel with the same weights) plus the ControlNet's residuals."""
    from diffusers import UNet2DConditionModel

    unet2d = UNet2DConditionModel.from_pretrained(TINY_BUNDLE / "stable-diffusion-v1-5", subfolder="unet").eval()
    noisy, pose = inputs["noisy"][:, :, :1], inputs["pose"][:, :1]
    with torch.no_grad():
        ours = stage1.model(noisy, inputs["t"], stage1.text, inputs["reference"], pose, torch.tensor([False]))
        down, mid = stage1.model.controlnet(noisy[:, :, 0], inputs["t"], encoder_hidden_states=stage1.text,
                                            controlnet_cond=pose[:, 0], return_dict=False)
        theirs = unet2d(noisy[:, :, 0], inputs["t"], stage1.text, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid).sample
    assert (ours[:, :, 0] - theirs).abs().max() <= 1e-5


def test_stage1_starts_as_the_paper_says(stage1):
    """Without --from: the appearance encoder is SD 1.5's UNet, the ControlNet's output convolutions are zero."""
    model = stage1.model
    unet_state = model.unet.state_dict()
    for key, value in model.appearance_encoder.state_dict().items():
        assert torch.equal(value, unet_state[key]), key
    zeroed = [p for n, p in model.controlnet.named_parameters() if n.startswith(("controlnet_down_blocks",
                                                                                 "controlnet_mid_block"))]
    assert zeroed and all(torch.count_nonzero(p) == 0 for p in zeroed)


@pytest.mark.parametrize("stage", [1, 2])
def test_each_stage_trains_only_its_parts(stage, stage1, stage2):
    parts = stage1 if stage == 1 else stage2
    names = trainable_names(parts.model, stage)
    if stage == 1:
        assert names and all(n.startswith(("appearance_encoder.", "controlnet.")) for n in names)
        assert not any(n.startswith("unet.") for n in names)
        assert not any(".motion_modules." in n for n, _ in parts.model.named_parameters())  # left out
    else:
        assert names and all(n.startswith("unet.") and ".motion_modules." in n for n in names)


def test_gradients_reach_the_appearance_encoder_only_through_reference_attention(stage1, inputs):
    """With the reference kept, the loss moves the encoder; with it dropped for every sample, nothing reaches it."""
    set_trainable(stage1.model, 1)
    noisy, pose = inputs["noisy"][:, :, :1], inputs["pose"][:, :1]
    grads = {}
    for keep in (True, False):
        stage1.model.zero_grad(set_to_none=True)
        out = stage1.model(noisy, inputs["t"], stage1.text, inputs["reference"], pose, torch.tensor([keep]))
        out.pow(2).mean().backward()
        grads[keep] = sum(float(p.grad.abs().sum()) for p in stage1.model.appearance_encoder.parameters()
                          if p.grad is not None)
    stage1.model.zero_grad(set_to_none=True)
    assert grads[True] > 0
    assert grads[False] == 0


def test_a_motion_module_saved_with_prefixes_starts_stage2_with_the_same_weights(stage2, tmp_path):
    """AnimateDiff's checkpoints carry the same key names, possibly behind `module.` (DDP) prefixes."""
    entries = torch.load(MA / "temporal_attention" / "temporal_attention.ckpt", weights_only=True)
    prefixed = tmp_path / "mm.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in entries.items()}}, prefixed)
    parts = load_parts(2, TINY_BUNDLE, start_from=MA, motion_module=prefixed)
    ours = {k: v for k, v in parts.model.unet.state_dict().items() if ".motion_modules." in k}
    theirs = {k: v for k, v in stage2.model.unet.state_dict().items() if ".motion_modules." in k}
    assert len(ours) == len(entries) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
