"""Reference attention: how the appearance encoder's features reach the denoising UNet.

The appearance encoder (a copy of SD's UNet run on the clean reference latent) records the input of the first
self-attention (`norm1` output) of each transformer block in its mid and up blocks. In the denoising UNet the
same blocks' self-attention then attends over its own tokens *and* those reference tokens. In the guidance
batch the unconditional half gets plain self-attention: MagicAnimate's guidance is over appearance, not text.

Both directions are attention processors sharing one `ReferenceBank`; no forward method is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from torch import nn

from .attention import attend


UNCONDITIONAL_ROWS = {"cond": 0.0, "uncond+cond": 0.5, "uncond": 1.0}
"""For each batch layout, the share of the UNet's rows (leading) that belong to the unconditional copy."""


@dataclass
class ReferenceBank:
    """Reference features for one denoising step, one (1, tokens, channels) tensor per reading block.

    `rows` says what the UNet batch holds: "uncond+cond" = [unconditional frames, conditional frames] (the first
    half must ignore the reference: classifier-free guidance over appearance), "cond" = conditional frames only
    (no guidance), "uncond" = unconditional frames only (a guidance copy run on its own).
    """

    size: int
    features: list[torch.Tensor | None] = field(default_factory=list)
    rows: str = "uncond+cond"

    def __post_init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.features = [None] * self.size

    def store(self, index: int, hidden_states: torch.Tensor) -> None:
        """Keep a writer's input: the first row (inference encodes one reference per step)."""
        self.features[index] = hidden_states[:1]

    @property
    def complete(self) -> bool:
        return all(f is not None for f in self.features)


class ReferenceWriteProcessor:
    """Self-attention that also stores its input in the bank (appearance encoder side)."""

    def __init__(self, bank: ReferenceBank, index: int) -> None:
        self.bank, self.index = bank, index

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, **kwargs) -> torch.Tensor:
        self.bank.store(self.index, hidden_states)
        return attend(attn, hidden_states, hidden_states)


class ReferenceReadProcessor:
    """Self-attention over [own tokens, reference tokens] for conditional rows (denoising UNet side)."""

    def __init__(self, bank: ReferenceBank, index: int) -> None:
        self.bank, self.index = bank, index

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, **kwargs) -> torch.Tensor:
        reference = self.bank.features[self.index]
        if reference is None:
            return attend(attn, hidden_states, hidden_states)
        rows = hidden_states.shape[0]
        split = int(rows * UNCONDITIONAL_ROWS[self.bank.rows])
        if split == rows:
            return attend(attn, hidden_states, hidden_states)
        cond = hidden_states[split:]
        out_cond = attend(attn, cond, cond, shared=reference.to(cond.dtype))
        if split == 0:
            return out_cond
        uncond = hidden_states[:split]
        return torch.cat([attend(attn, uncond, uncond), out_cond], dim=0)


@dataclass
class SampleReferenceBank(ReferenceBank):
    """Reference features for a training batch: one (b, tokens, channels) tensor per reading block, one row per
    sample (each video of the batch has its own reference), kept with their autograd history.

    `keep` (b,) bool says which samples see their reference; the others get plain self-attention, exactly what
    inference's unconditional guidance copy computes. Dropping is a selection, never a skipped module: every
    sample and every process runs the same graph.
    """

    keep: torch.Tensor | None = None

    def store(self, index: int, hidden_states: torch.Tensor) -> None:
        self.features[index] = hidden_states


class SampleReferenceReadProcessor:
    """Training-side reading: self-attention over [own tokens, own sample's reference tokens], per sample.

    The hidden states hold b·f rows (frames folded into the batch, row-major); each sample's reference serves its
    f rows. Rows of samples whose `keep` is False take the plain self-attention instead (the same arithmetic as
    `ReferenceReadProcessor`'s unconditional rows). When any sample is dropped both are computed for every row and
    one is selected: the reference path (and so the appearance encoder) is in every step's graph whoever is
    dropped, and every parameter takes part in every step on every process. The plain attention, which uses the
    same projections, is skipped only when no sample needs it.
    """

    def __init__(self, bank: SampleReferenceBank, index: int) -> None:
        self.bank, self.index = bank, index

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, **kwargs) -> torch.Tensor:
        reference = self.bank.features[self.index]
        if reference is None:
            raise RuntimeError("the appearance encoder has not filled the training reference bank")
        with_reference = attend(attn, hidden_states, hidden_states, shared=reference.to(hidden_states.dtype))
        keep = self.bank.keep
        if keep is None or bool(keep.all()):  # nobody dropped: the plain attention would be selected nowhere
            return with_reference
        plain = attend(attn, hidden_states, hidden_states)
        rows = keep.to(hidden_states.device).repeat_interleave(hidden_states.shape[0] // keep.shape[0])
        return torch.where(rows[:, None, None], with_reference, plain)


def reference_blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of the mid and up blocks, in module order: the pairs that exchange features.

    The official writer/reader pairing sorts these stably by channel count, largest first; for SD's UNet
    layout that is the module order itself, so encoder and UNet blocks pair up index by index.
    """
    blocks: list[nn.Module] = []
    for part in [model.mid_block, *model.up_blocks]:
        blocks.extend(
            m for m in part.modules()
            if isinstance(m, (BasicTransformerBlock, BankOnlyTransformerBlock))
        )
    return blocks


class BankOnlyTransformerBlock(nn.Module):
    """The last transformer block of the released appearance encoder, which keeps only `norm1`.

    The official class stubs everything after `norm1` in this block (the weights are not in the release, and
    nothing after it is used), so its single job is to put `norm1(x)` in the bank and pass `x` on.
    """

    def __init__(self, dim: int, bank: ReferenceBank | None = None, index: int = -1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=True)
        self.bank, self.index = bank, index

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.bank is not None:
            self.bank.store(self.index, self.norm1(hidden_states))
        return hidden_states


def attach_writer(encoder: nn.Module, bank: ReferenceBank) -> None:
    """Make the appearance encoder fill `bank` whenever it runs."""
    for index, block in enumerate(reference_blocks(encoder)):
        if isinstance(block, BankOnlyTransformerBlock):
            block.bank, block.index = bank, index
        else:
            block.attn1.set_processor(ReferenceWriteProcessor(bank, index))


def attach_reader(unet: nn.Module, bank: ReferenceBank) -> None:
    """Make the denoising UNet's mid/up self-attention read from `bank`."""
    for index, block in enumerate(reference_blocks(unet)):
        block.attn1.set_processor(ReferenceReadProcessor(bank, index))


def attach_sample_reader(unet: nn.Module, bank: SampleReferenceBank) -> None:
    """Make the denoising UNet's mid/up self-attention read per-sample references from `bank` (training)."""
    for index, block in enumerate(reference_blocks(unet)):
        block.attn1.set_processor(SampleReferenceReadProcessor(bank, index))
