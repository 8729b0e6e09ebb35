"""Attention arithmetic shared by the engine's attention processors.

diffusers' `Attention` modules keep their weights and state-dict keys; these processors only change how the
keys and values are formed, so tokens that are the same for many rows are projected once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


def attend(attn: Attention, hidden_states: torch.Tensor, context: torch.Tensor,
            shared: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention of `hidden_states` over `context` with `attn`'s projections (no residual).

    `shared` (s, m, c) are tokens every row also attends to, after its own context tokens. Their keys and values
    are projected once and broadcast over the rows: the same numbers as projecting them for every frame, at
    1/rows of the cost (the reference tokens are the same for every frame of a window). With s > 1 (training:
    one reference per video of a batch), each shared row serves the rows/s consecutive rows of its video.
    """
    b = hidden_states.shape[0]
    q = attn.to_q(hidden_states)
    k = attn.to_k(context)
    v = attn.to_v(context)
    if shared is not None:
        k = torch.cat([k, _serve_rows(attn.to_k(shared), b)], dim=1)
        v = torch.cat([v, _serve_rows(attn.to_v(shared), b)], dim=1)
    return _project_out(attn, q, k, v)


def _serve_rows(shared: torch.Tensor, rows: int) -> torch.Tensor:
    """(s, m, c) projected shared tokens for `rows` rows: broadcast when s is 1, else s groups of rows/s rows."""
    if shared.shape[0] == 1:
        return shared.expand(rows, -1, -1)
    if rows % shared.shape[0]:
        raise ValueError(f"{rows} rows cannot share {shared.shape[0]} reference rows evenly")
    return shared.repeat_interleave(rows // shared.shape[0], dim=0)


def _project_out(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention over projected (rows, tokens, channels) tensors, then `attn`'s output layer."""
    b, n, _ = q.shape
    head_dim = q.shape[-1] // attn.heads

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, -1, attn.heads, head_dim).transpose(1, 2)

    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), scale=attn.scale)
    out = out.transpose(1, 2).reshape(b, n, attn.heads * head_dim).to(q.dtype)
    out = attn.to_out[0](out)
    return attn.to_out[1](out)


class SharedContextProcessor:
    """Cross-attention whose context is given once per video, not once per frame.

    MagicAnimate's text context is the empty prompt for every frame of every window, so projecting it for each
    of a window's frames redoes the same work. The UNet passes the context once per batch row (b, 77, c); the
    hidden states hold b·f rows (frames folded into the batch, row-major), and each context row serves the f
    consecutive rows of its video.
    """

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is None:
            return attend(attn, hidden_states, hidden_states)
        rows, contexts = hidden_states.shape[0], encoder_hidden_states.shape[0]
        if rows == contexts:
            return attend(attn, hidden_states, encoder_hidden_states)
        if rows % contexts:
            raise ValueError(f"{rows} hidden rows cannot share {contexts} contexts evenly")
        q = attn.to_q(hidden_states)
        k = attn.to_k(encoder_hidden_states).repeat_interleave(rows // contexts, dim=0)
        v = attn.to_v(encoder_hidden_states).repeat_interleave(rows // contexts, dim=0)
        return _project_out(attn, q, k, v)
