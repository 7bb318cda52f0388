"""Post-LN Transformer encoder with optional attention-map reuse (ARMHuBERT).

Layout follows wav2vec 2.0 / HuBERT with ``layer_norm_first=False``:
``x = LN(x + pos_conv(x))``, dropout, then post-LN layers. A layer either
computes its own attention (Q, K, V and output projections) or reuses the
attention probabilities of the previous layer (V and output projections only).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from audio_compress.models._inplace import gelu_fresh, needs_graph, softmax_fresh


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """Identity in the forward pass; multiplies the incoming gradient by ``factor``."""
    return _ScaleGrad.apply(x, factor)


def layer_grad_scales(num_layers: int) -> list[float]:
    """ARMHuBERT layer-gradient factors ``m_i = (L - i) / (L - i + 1)`` for 0-indexed layer i."""
    return [(num_layers - i) / (num_layers - i + 1) for i in range(num_layers)]


def attention_bias(key_padding_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive (B, 1, 1, T) mask: 0 at valid keys, the most negative finite ``dtype`` value at padded ones.

    Adding it to scores of magnitude below ~1e31 gives exactly that value at padded keys (the
    score is under half its spacing), so it equals a masked fill; finite rather than -inf, a
    fully padded row stays uniform instead of NaN.
    """
    bias = torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device)
    return bias.masked_fill_(key_padding_mask, torch.finfo(dtype).min)[:, None, None, :]


def _init_linear(linear: nn.Linear) -> nn.Linear:
    # BERT-style initialisation, as used by wav2vec 2.0 / HuBERT Transformers.
    nn.init.normal_(linear.weight, mean=0.0, std=0.02)
    nn.init.zeros_(linear.bias)
    return linear


class SelfAttention(nn.Module):
    """Multi-head self-attention that computes its map or reuses a given one.

    Args:
        embed_dim: model width d.
        num_heads: heads h.
        dropout: dropout on the attention probabilities (forced to 0 when reusing).
        computes_attention: False builds a reuse layer without Q/K projections.
        release_compat: reproduce the released ARMHuBERT reuse quirks (see
            :class:`audio_compress.models.config.StudentConfig`).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float, computes_attention: bool,
                 release_compat: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.computes_attention = computes_attention
        self.release_compat = release_compat
        self.dropout = dropout if computes_attention else 0.0
        if computes_attention:
            self.q_proj = _init_linear(nn.Linear(embed_dim, embed_dim))
            self.k_proj = _init_linear(nn.Linear(embed_dim, embed_dim))
        self.v_proj = _init_linear(nn.Linear(embed_dim, embed_dim))
        self.out_proj = _init_linear(nn.Linear(embed_dim, embed_dim))

    def _heads(self, x: Tensor) -> Tensor:
        batch, frames, _ = x.shape
        return x.view(batch, frames, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None,
                reused: Tensor | None = None, need_weights: bool = True,
                attn_bias: Tensor | None = None, workspace: Tensor | None = None,
                ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Attend over ``x`` (B, T, d).

        Args:
            x: input (B, T, d).
            key_padding_mask: (B, T) bool, True at padded frames (they get zero weight).
            reused: previous layer's probabilities (B, h, T, T); required iff this is a
                reuse layer.
            need_weights: False lets a computing layer use the fused
                ``scaled_dot_product_attention`` kernel, which never materialises the map;
                both maps are then returned as None.
            attn_bias: :func:`attention_bias` of ``key_padding_mask``, built once by the
                encoder for all layers; made here when absent or of another dtype.
            workspace: a (B, h, T, T) map nobody reads any more (inference only); a computing
                layer writes its scores and probabilities into it instead of new memory.

        Returns:
            ``(output, carried, used)``: the (B, T, d) output; the (B, h, T, T) map handed
            to a following reuse layer (the computed map, or the received one for a reuse
            layer); and the map actually applied to the values.
        """
        if self.computes_attention != (reused is None):
            raise ValueError("a reuse layer needs the previous map; a computing layer must not get one")
        if self.computes_attention and not need_weights:
            return self._fused_attention(x, key_padding_mask, attn_bias), None, None
        values = self._heads(self.v_proj(x))
        if self.computes_attention:
            # The projections' and the product's backward passes do not read their outputs,
            # so scaling and masking may write over them.
            queries = self._heads(self.q_proj(x).mul_(self.head_dim**-0.5))
            scores = torch.matmul(queries, self._heads(self.k_proj(x)).transpose(-1, -2), out=workspace)
            if key_padding_mask is not None:
                scores.add_(self._bias(key_padding_mask, attn_bias, scores.dtype))
            carried = used = softmax_fresh(scores)
        elif self.release_compat:
            carried = reused
            batch, heads, frames, _ = reused.shape
            # Released code: head-major flattening of the maps read back batch-major,
            # then a second softmax over already-normalised probabilities.
            used = reused.transpose(0, 1).reshape(batch, heads, frames, frames)
            if key_padding_mask is not None:
                used = used + self._bias(key_padding_mask, attn_bias, used.dtype)
            used = used.softmax(dim=-1)
        else:
            carried = used = reused
        probs = F.dropout(used, p=self.dropout, training=self.training)
        # (V^T P^T)^T: CPU BLAS runs this orientation of the product ~1.5x faster (short head_dim rows)
        out = (values.transpose(-1, -2) @ probs.transpose(-1, -2)).permute(0, 3, 1, 2).flatten(2)
        return self.out_proj(out), carried, used

    @staticmethod
    def _bias(key_padding_mask: Tensor, attn_bias: Tensor | None, dtype: torch.dtype) -> Tensor:
        return attn_bias if attn_bias is not None and attn_bias.dtype == dtype else attention_bias(key_padding_mask, dtype)

    def _fused_attention(self, x: Tensor, key_padding_mask: Tensor | None, attn_bias: Tensor | None) -> Tensor:
        queries, keys, values = (self._heads(proj(x)) for proj in (self.q_proj, self.k_proj, self.v_proj))
        # Additive finite mask (not a bool one): a fully padded row stays uniform, as in forward().
        attn_mask = None if key_padding_mask is None else self._bias(key_padding_mask, attn_bias, queries.dtype)
        out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class TransformerLayer(nn.Module):
    """Post-LN Transformer layer: ``LN(x + attn(x))`` then ``LN(x + FFN(x))`` with GELU."""

    def __init__(self, embed_dim: int, ffn_dim: int, num_heads: int, dropout: float, attention_dropout: float,
                 activation_dropout: float, computes_attention: bool = True, release_compat: bool = False):
        super().__init__()
        self.self_attn = SelfAttention(embed_dim, num_heads, attention_dropout, computes_attention, release_compat)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = _init_linear(nn.Linear(embed_dim, ffn_dim))
        self.fc2 = _init_linear(nn.Linear(ffn_dim, embed_dim))
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(activation_dropout)

    @property
    def computes_attention(self) -> bool:
        """Whether this layer has Q/K projections (False: it reuses the previous map)."""
        return self.self_attn.computes_attention

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, reused: Tensor | None = None,
                need_weights: bool = True, attn_bias: Tensor | None = None,
                workspace: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Return ``(output, carried_map, used_map)``; see :meth:`SelfAttention.forward`."""
        attn_out, carried, used = self.self_attn(x, key_padding_mask, reused, need_weights, attn_bias, workspace)
        x = self.self_attn_layer_norm(x + self.dropout(attn_out))
        hidden = self.activation_dropout(gelu_fresh(self.fc1(x)))
        x = self.final_layer_norm(x + self.dropout(self.fc2(hidden)))
        return x, carried, used


class PositionalConv(nn.Module):
    """Grouped convolutional positional embedding with weight norm over the kernel axis.

    An even kernel with padding ``kernel // 2`` yields one extra frame; dropping the
    last one keeps the output aligned with the input ("same" padding).
    """

    def __init__(self, embed_dim: int, kernel: int, groups: int):
        super().__init__()
        conv = nn.Conv1d(embed_dim, embed_dim, kernel, padding=kernel // 2, groups=groups)
        # Variance-preserving init for a kernel*d fan-in, as in wav2vec 2.0.
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * embed_dim)))
        nn.init.zeros_(conv.bias)
        self.conv = weight_norm(conv, dim=2)
        self._cached_weight: tuple[tuple, Tensor] | None = None  # (parameter key, kernel), inference only

    def _weight(self) -> Tensor:
        """The weight-normed kernel; without autograd it is reused until a parameter changes.

        Training recomputes it every call so that gradients reach ``g`` and ``v``; the key
        (storage and in-place version of both) catches optimizer steps and state-dict loads.
        """
        if torch.is_grad_enabled():
            self._cached_weight = None
            return self.conv.weight
        params = self.conv.parametrizations.weight.original0, self.conv.parametrizations.weight.original1
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        if self._cached_weight is None or self._cached_weight[0] != key:
            self._cached_weight = key, self.conv.weight
        return self._cached_weight[1]

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (B, T, d) -> positional term (B, T, d)."""
        conv = self.conv
        y = F.conv1d(x.transpose(1, 2), self._weight(), conv.bias, padding=conv.padding, groups=conv.groups)
        return F.gelu(y[:, :, :-1]).transpose(1, 2)


def _attention_dtype(x: Tensor) -> torch.dtype:
    """The dtype the attention scores will have: the autocast dtype when autocast is on, else ``x``'s."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class EncoderOutput(NamedTuple):
    """What :meth:`TransformerEncoder.forward` returns."""

    pre_transformer: Tensor
    hidden_states: list[Tensor]
    attentions: list[Tensor] | None


class TransformerEncoder(nn.Module):
    """Positional conv, encoder LayerNorm, dropout and a stack of post-LN layers.

    Args:
        embed_dim, ffn_dim, num_heads: layer sizes.
        reuse_pattern: per layer, True = computes attention, False = reuses the previous map.
        dropout, attention_dropout, activation_dropout: dropout rates.
        pos_conv_kernel, pos_conv_groups: positional convolution shape.
        layer_grad_scale: apply ARMHuBERT layer-gradient scaling.
        release_compat: released ARMHuBERT reuse quirks (reuse layers only).
    """

    def __init__(self, embed_dim: int, ffn_dim: int, num_heads: int, reuse_pattern: list[bool], dropout: float,
                 attention_dropout: float, activation_dropout: float, pos_conv_kernel: int, pos_conv_groups: int,
                 layer_grad_scale: bool = False, release_compat: bool = False):
        super().__init__()
        if not reuse_pattern or not reuse_pattern[0]:
            raise ValueError("reuse_pattern must be non-empty and start with True (first layer computes attention)")
        self.pos_conv = PositionalConv(embed_dim, pos_conv_kernel, pos_conv_groups)
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(embed_dim, ffn_dim, num_heads, dropout, attention_dropout, activation_dropout,
                             computes_attention=computes, release_compat=release_compat)
            for computes in reuse_pattern
        )
        self.grad_scales = layer_grad_scales(len(reuse_pattern)) if layer_grad_scale else None

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, output_attentions: bool = False) -> EncoderOutput:
        """Encode ``x`` (B, T, d) with frame ``padding_mask`` (B, T, True = padded).

        Padded frames are zeroed first, so the positional conv sees the same zeros a
        shorter unpadded row gets from its own zero padding. With layer-gradient
        scaling, layer i's output feeds layer i+1 with gradient factor ``m_i`` and the
        returned (distillation) copy gets an extra ``1 - m_i``. An attention map handed
        to a reuse layer is not scaled: it is computed from the computing layer's input,
        so that path reaches the reuse layer without the computing layer's ``m_i``.
        """
        if padding_mask is not None and x.device.type == "cpu" and not padding_mask.any():
            padding_mask = None  # nothing padded: skip every mask (the check would cost a device sync on GPU)
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = self.layer_norm(x + self.pos_conv(x))
        pre_transformer = x
        x = self.dropout(x)
        hidden_states: list[Tensor] = []
        attentions: list[Tensor] | None = [] if output_attentions else None
        attn_bias = None if padding_mask is None else attention_bias(padding_mask, _attention_dtype(x))
        carried = None
        for i, (layer, need_weights) in enumerate(zip(self.layers, self._needs_weights(output_attentions))):
            reused = workspace = None
            if not layer.computes_attention:
                reused = carried
            elif (carried is not None and not output_attentions and not needs_graph(carried)
                  and not torch.is_autocast_enabled(x.device.type)):
                # The last map was consumed by its reuse layers and nothing keeps it: its memory
                # takes this layer's map (a fresh (B, h, T, T) map costs page faults on CPU).
                workspace = carried
            x, carried, used = layer(x, padding_mask, reused, need_weights, attn_bias, workspace)
            if attentions is not None:
                attentions.append(used)
            if self.grad_scales is None:
                hidden_states.append(x)
            else:
                x = scale_grad(x, self.grad_scales[i])
                hidden_states.append(scale_grad(x, 1.0 - self.grad_scales[i]))
        return EncoderOutput(pre_transformer, hidden_states, attentions)

    def _needs_weights(self, output_attentions: bool) -> list[bool]:
        """Per layer: whether its attention map must exist (returned, applied by a reuse layer, or read next)."""
        computes = [layer.computes_attention for layer in self.layers]
        return [output_attentions or not own or not nxt for own, nxt in zip(computes, computes[1:] + [True])]
