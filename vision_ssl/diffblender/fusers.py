"""Gated self-attention fuser of DiffBlender (GLIGEN's gated self-attention with a runtime scale).

``x <- x + s tanh(alpha_attn) [SA(LN [x; W objs])]_{1:N_x}``, then
``x <- x + s tanh(alpha_dense) FF(LN x)``, with both gates zero at initialisation (an exact
identity). Submodule and parameter names and shapes equal diffusers' ``GatedSelfAttentionDense``
(``linear``, ``attn.to_q/k/v``, ``attn.to_out.0``, ``ff.net.0.proj``, ``ff.net.2``, ``norm1``,
``norm2``, ``alpha_attn``, ``alpha_dense``), so GLIGEN-style weights load by renaming alone; it
is our own module because diffusers' only has an on/off switch and sits on the deprecated GLIGEN
path. The same class serves the spatial fuser (query = visual tokens of width C) and the
non-spatial one (query = text tokens of width D, attention inner width C).
"""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn


class GatedFuser(nn.Module):
    """Gated self-attention over ``[x; linear(objs)]`` returning the updated ``x``.

    Args:
        query_dim: width of ``x``.
        context_dim: width of the condition tokens ``objs``.
        n_heads, d_head: heads and head width of the attention (inner width ``n_heads * d_head``).
    """

    def __init__(self, query_dim: int, context_dim: int, n_heads: int, d_head: int) -> None:
        super().__init__()
        self.linear = nn.Linear(context_dim, query_dim)
        self.attn = Attention(query_dim=query_dim, heads=n_heads, dim_head=d_head)
        self.ff = FeedForward(query_dim, activation_fn="geglu")
        self.norm1 = nn.LayerNorm(query_dim)
        self.norm2 = nn.LayerNorm(query_dim)
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, objs: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``x``: B x N x query_dim; ``objs``: B x M x context_dim; ``scale`` multiplies both gates."""
        if scale == 0:
            return x
        n = x.shape[1]
        tokens = torch.cat([x, self.linear(objs).to(x.dtype)], dim=1)
        x = x + scale * self.alpha_attn.tanh() * self.attn(self.norm1(tokens))[:, :n]
        return x + scale * self.alpha_dense.tanh() * self.ff(self.norm2(x))
