"""The CLIP text encoder of Stable Diffusion 1.5, and the one prompt MagicAnimate gives it.

MagicAnimate always conditions on the empty prompt, so all the tokenizer has to do is frame it with the
start and end tokens and pad; the encoder itself follows the released `CLIPTextModel` (state-dict keys
included) so the SD 1.5 `text_encoder/` weights load unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class CLIPTextConfig:
    """The fields of `text_encoder/config.json` that shape the network."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, data: dict) -> "CLIPTextConfig":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @classmethod
    def from_json(cls, path: Path) -> "CLIPTextConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _activation(name: str):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return F.gelu
    raise ValueError(f"unsupported CLIP activation {name!r}")


class _CLIPAttention(nn.Module):
    def __init__(self, cfg: CLIPTextConfig) -> None:
        super().__init__()
        dim = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        # CLIP's text transformer is causal: each token sees only the tokens before it.
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class _CLIPMLP(nn.Module):
    def __init__(self, cfg: CLIPTextConfig) -> None:
        super().__init__()
        self.act = _activation(cfg.hidden_act)
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _CLIPLayer(nn.Module):
    def __init__(self, cfg: CLIPTextConfig) -> None:
        super().__init__()
        self.self_attn = _CLIPAttention(cfg)
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = _CLIPMLP(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class _CLIPEmbeddings(nn.Module):
    def __init__(self, cfg: CLIPTextConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)


class _CLIPEncoder(nn.Module):
    def __init__(self, cfg: CLIPTextConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_CLIPLayer(cfg) for _ in range(cfg.num_hidden_layers))


class _CLIPTextTransformer(nn.Module):
    def __init__(self, cfg: CLIPTextConfig) -> None:
        super().__init__()
        self.embeddings = _CLIPEmbeddings(cfg)
        self.encoder = _CLIPEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


class CLIPTextEncoder(nn.Module):
    """`last_hidden_state` of CLIP's text transformer: what SD 1.5 cross-attends to."""

    # Older exports carry the position-id table as a buffer; it is always arange(77) and not needed.
    optional_keys = ("text_model.embeddings.position_ids",)

    def __init__(self, cfg: CLIPTextConfig) -> None:
        super().__init__()
        self.config = cfg
        self.text_model = _CLIPTextTransformer(cfg)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        tm = self.text_model
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = tm.embeddings.token_embedding(input_ids) + tm.embeddings.position_embedding(positions)
        for layer in tm.encoder.layers:
            x = layer(x)
        return tm.final_layer_norm(x)


@dataclass(frozen=True)
class EmptyPromptTokens:
    """Token ids of the empty prompt: start token, end token, then padding up to the context length."""

    bos_id: int
    eos_id: int
    pad_id: int
    length: int

    @classmethod
    def from_tokenizer_dir(cls, folder: Path) -> "EmptyPromptTokens":
        folder = Path(folder)
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        special = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            path = folder / name
            if path.exists():
                special = {**json.loads(path.read_text(encoding="utf-8")), **special}

        def token(key: str, default: str) -> int:
            value = special.get(key, default)
            if isinstance(value, dict):  # {"content": "<|endoftext|>", ...}
                value = value.get("content", default)
            if value not in vocab:
                raise KeyError(f"{folder / 'vocab.json'}: token {value!r} ({key}) is not in the vocabulary")
            return int(vocab[value])

        length = int(special.get("model_max_length", 77))
        if length > 1000:  # tokenizers saved without a limit report a huge sentinel
            length = 77
        return cls(
            bos_id=token("bos_token", "<|startoftext|>"),
            eos_id=token("eos_token", "<|endoftext|>"),
            pad_id=token("pad_token", "<|endoftext|>"),
            length=length,
        )

    def ids(self) -> torch.Tensor:
        body = [self.bos_id, self.eos_id] + [self.pad_id] * (self.length - 2)
        return torch.tensor([body], dtype=torch.long)
