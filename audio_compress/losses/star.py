r"""STaR distillation losses: temporal Gram matrices (TGM) and head-averaged attention maps.

Notation (reference ``speech.md`` §1.2): ``X^l`` is the ``(B, T, d)`` output of Transformer
layer ``l`` (``l = 1..L``) and ``X^0`` the input of the first layer (the student's
``pre_trf`` features). Student width ``d_S`` and teacher width ``d_T`` may differ: a TGM is
``T x T`` so no projection head is needed.

* layer-wise TGM   ``G^l = X^l (X^l)^T``  (symmetric PSD),
* intra-layer TGM  ``G~^l = X^{l-1} (X^l)^T``  (FSP-style, generally not symmetric),
* ``L_layer-wise = sum_l MSE(G^{l,S}, G^{l,T})``, ``L_intra = sum_l MSE(G~^{l,S}, G~^{l,T})``,
* STaR's final objective is ``L_layer-wise + L_intra`` with equal weights; an optional
  head-averaged attention KL term (``L_avg-attn``, :func:`avg_attention_kl`) can be added,
  although the paper dropped it.
* ``L_avg-attn`` (reference §1.2 (a)): KL divergence from the teacher's to the student's
  head-averaged attention rows ``A_bar^l = (1/H) sum_h A_h^l``; averaging over the heads removes
  the need for equal head counts.

Choices the paper leaves open (reference §1.2 "What is NOT confirmed") and what we do:

* **Normalisation** is configurable: ``"none"`` (raw ``X Y^T``), ``"dim"`` (divide by the
  channel width ``d``, the FSP convention of averaging over the summed channel axis) and
  ``"cosine"`` (L2-normalise every frame first, so entries are cosine similarities).
  **Default: ``"dim"``**, as the reference recommends: raw Grams scale with ``d`` and with the
  activation norms (teacher d=768 vs. student d=432), give losses of order 1e3-1e4 and
  overflow in fp16. Note that ``"dim"`` divides the teacher Gram by ``d_T`` and the student Gram
  by ``d_S``, so it is *not* invariant to an orthogonal embedding into a wider space (use
  ``"none"`` or ``"cosine"`` for that property); ``"none"`` and ``"cosine"`` are.
* **Reduction**: mean squared error over the valid ``(i, j)`` frame pairs, pooled over the
  batch (sum of squared errors / number of valid pairs), then **summed** over layers.
* **Padding**: rows and columns of padded frames are zeroed in every Gram and excluded from
  the mean; garbage in padded frames has no effect on the value or the gradient.
* **Layers**: the layer-wise term uses ``X^1..X^L`` (1:1 teacher/student), no CNN (``X^0``)
  term; the intra-layer term uses the ``L`` pairs ``(X^0, X^1) .. (X^{L-1}, X^L)``.
* **Lengths**: all student and teacher tensors are cropped to their common number of frames
  (teachers can be one frame longer; reference §7 item 1) by
  :func:`audio_compress.losses._common.crop_to_common_length`.
* **Precision**: Gram products and errors are computed in (at least) float32, so float16 and
  bfloat16 activations give finite losses and gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_same_length, crop_to_common_length, safe_div, to_compute, valid_frames

NORMALIZE_OPTIONS = ("none", "dim", "cosine")


def _check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZE_OPTIONS:
        raise ValueError(f"unknown TGM normalize={normalize!r}; valid options are {NORMALIZE_OPTIONS}")


def temporal_gram(
    x: Tensor,
    y: Tensor | None = None,
    padding_mask: Tensor | None = None,
    normalize: str = "dim",
) -> Tensor:
    r"""Temporal Gram matrix ``G = X Y^T`` of shape ``(B, T, T)``.

    ``G[b, i, j] = sum_k X[b, i, k] Y[b, j, k] / c`` where ``c = 1`` for ``normalize="none"``
    and ``c = d`` (the channel width) for ``"dim"``; for ``"cosine"`` each frame of ``X`` and
    ``Y`` is first divided by its L2 norm (``G`` holds cosine similarities; all-zero frames give
    zero entries).

    Args:
        x: ``(B, T, d)`` frames.
        y: ``(B, T, d)`` frames; defaults to ``x`` (layer-wise TGM). Pass ``y = X^l`` and
            ``x = X^{l-1}`` for the intra-layer TGM.
        padding_mask: ``(B, T)`` bool, True at padded frames; their rows and columns of ``G``
            are exactly zero.
        normalize: ``"none"``, ``"dim"`` or ``"cosine"``.

    The product is computed in at least float32 (half inputs are upcast).
    """
    _check_normalize(normalize)
    if y is None:
        y = x
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(f"temporal_gram expects (B, T, d) tensors, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape != y.shape:
        raise ValueError(
            f"temporal_gram: x {tuple(x.shape)} and y {tuple(y.shape)} must have the same (B, T, d)"
        )
    x = to_compute(x)
    y = to_compute(y)
    if padding_mask is not None:
        pad = ~valid_frames(padding_mask, x.shape[0], x.shape[1], x.device)
        # masked_fill (not multiplication) so that NaN/inf garbage in padding is removed too.
        x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        y = y.masked_fill(pad.unsqueeze(-1), 0.0)
    if normalize == "cosine":
        x = F.normalize(x, p=2.0, dim=-1)
        y = F.normalize(y, p=2.0, dim=-1)
    g = torch.bmm(x, y.transpose(1, 2))
    if normalize == "dim":
        g = g / x.shape[-1]
    return g


def gram_mse(g_s: Tensor, g_t: Tensor, padding_mask: Tensor | None = None) -> Tensor:
    r"""Mean squared error between two ``(B, T, T)`` Gram matrices over valid frame pairs.

    ``MSE = sum_{b, i, j valid} (G^S_{bij} - G^T_{bij})^2 / #{(b, i, j): i and j valid}``

    i.e. batch-pooled: every valid pair of every row counts once. Without padding this is
    ``F.mse_loss(g_s, g_t)``. Returns a float32 (or float64) scalar; 0 if no pair is valid.
    """
    if g_s.shape != g_t.shape or g_s.dim() != 3 or g_s.shape[1] != g_s.shape[2]:
        raise ValueError(
            f"gram_mse expects two (B, T, T) tensors of equal shape, got {tuple(g_s.shape)} and {tuple(g_t.shape)}"
        )
    diff2 = (to_compute(g_s) - to_compute(g_t)).pow(2)
    if padding_mask is None:
        return diff2.mean()
    valid = valid_frames(padding_mask, g_s.shape[0], g_s.shape[1], g_s.device)
    pair = valid.unsqueeze(2) & valid.unsqueeze(1)
    return safe_div(torch.where(pair, diff2, diff2.new_zeros(())).sum(), pair.sum())


#: Devices where the Gram products run row by row on each row's valid frames (see :func:`_frame_groups`).
PER_ROW_DEVICES = ("cpu",)
#: Diagonal blocks a layer-wise (symmetric) Gram is cut into: only the ``k (k + 1) / 2`` blocks on and
#: below the diagonal are computed, which saves ``(k - 1) / (2 k)`` of its forward product.
SYMMETRIC_BLOCKS = 2


class _FrameGroup(NamedTuple):
    """Rows of the batch that one product covers, and the frames it keeps.

    ``frames`` is a slice (a row's valid prefix, or every frame) or an index tensor (valid frames
    that are not a prefix); ``pad`` (rows, T), when given, marks padded frames to zero instead.
    """

    rows: slice
    frames: slice | Tensor
    pad: Tensor | None

    def take(self, x: Tensor) -> Tensor:
        """The group's ``(rows, n, d)`` part of a ``(B, T, d)`` tensor (a view for slices)."""
        x = x[self.rows, self.frames]
        return x if self.pad is None else x.masked_fill(self.pad.unsqueeze(-1), 0.0)

    def size(self, frames: int) -> int:
        """Number of frames the group keeps out of ``frames``."""
        return len(range(frames)[self.frames]) if isinstance(self.frames, slice) else self.frames.numel()

    @property
    def is_everything(self) -> bool:
        return self.rows == slice(None) and self.frames == slice(None)


def _frame_groups(padding_mask: Tensor | None, batch: int, frames: int, device: torch.device) -> list[_FrameGroup]:
    """How the Gram products visit the batch.

    On CPU (:data:`PER_ROW_DEVICES`) the products' FLOPs set the time, and a row's padded frames
    only add zero rows and columns to its Grams: every row gets its own products over its valid
    frames, ``sum_b n_b^2`` Gram entries instead of ``B T^2`` (24.5 % fewer for the 4 x 10 s batch
    of ``bench/distill_step.py``). Elsewhere one batched product per layer beats ``B`` small
    launches, and :func:`_prepared_states` has zeroed the padded frames instead. Rows without a
    valid frame add nothing; when no row has one, the batch with its frames zeroed keeps the (zero)
    loss attached to the graph.
    """
    if device.type not in PER_ROW_DEVICES:
        return [_FrameGroup(slice(None), slice(None), None)]
    valid = valid_frames(padding_mask, batch, frames, device)
    lengths = valid.sum(dim=1)
    prefix = (valid == (torch.arange(frames, device=device) < lengths.unsqueeze(1))).all(dim=1)
    groups = []
    for row, (length, is_prefix) in enumerate(zip(lengths.tolist(), prefix.tolist())):
        if length:
            kept = slice(0, length) if is_prefix else valid[row].nonzero().squeeze(1)
            groups.append(_FrameGroup(slice(row, row + 1), kept, None))
    return groups or [_FrameGroup(slice(None), slice(None), ~valid)]


def _prepared_states(states: Sequence[Tensor], padding_mask: Tensor | None, normalize: str) -> list[Tensor]:
    """``states`` in the compute dtype, cosine-normalised if asked (done once per tensor).

    Padded frames are zeroed here where the Gram products do not skip them (off CPU), and before a
    cosine normalisation, whose backward would turn garbage there into NaN gradients.
    """
    out = []
    for x in states:
        x = to_compute(x)
        if padding_mask is not None and (normalize == "cosine" or x.device.type not in PER_ROW_DEVICES):
            pad = ~valid_frames(padding_mask, x.shape[0], x.shape[1], x.device)
            x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        if normalize == "cosine":
            x = F.normalize(x, p=2.0, dim=-1)
        out.append(x)
    return out


def _gram_squared_errors(s_left: Sequence[Tensor], s_right: Sequence[Tensor], t_left: Sequence[Tensor],
                         t_right: Sequence[Tensor], padding_mask: Tensor | None, normalize: str) -> Tensor:
    r"""Per layer ``sum_{b,i,j valid} (G^S_{bij} - G^T_{bij})^2`` for the Grams ``G = left right^T / c``.

    Inputs are per-layer ``(B, T, d)`` tensors from :func:`_prepared_states`; the products visit
    the batch as :func:`_frame_groups` says. The groups whose ``T x T`` form is cheaper go, for all
    layers at once, through one :class:`_TGramErrors` call (one autograd node; see there). When the
    channel widths are small against a group's frame count, the ``d x d`` form
    ``||A B^T - C D^T||^2 = <A^T A, B^T B> + <C^T C, D^T D> - 2 <A^T C, B^T D>`` is used instead;
    it subtracts large terms, so it runs in float64 and is chosen only when it needs under half
    the multiply-adds of the ``T x T`` form. Autocast is switched off: the products stay in
    float32 (or float64) whatever the activations' dtype.
    """
    batch, frames = s_left[0].shape[:2]
    groups = _frame_groups(padding_mask, batch, frames, s_left[0].device)
    errors: list[Tensor] = []
    t_form: list[tuple[list[_FrameGroup], Tensor, Tensor | None, Tensor, Tensor | None]] = []
    for layer in zip(s_left, s_right, t_left, t_right):
        dtype = torch.promote_types(layer[0].dtype, layer[2].dtype)  # one fused product needs one dtype
        a, b, c, d = (x.to(dtype) for x in layer)
        d_s, d_t = a.shape[-1], c.shape[-1]
        shared = layer[1] is layer[0] and layer[3] is layer[2]
        d_form_macs = (d_s * d_s + d_t * d_t + d_s * d_t) * (1 if shared else 2)
        c_s, c_t = (d_s, d_t) if normalize == "dim" else (1, 1)
        error = a.new_zeros(())
        t_groups = []
        for group in groups:
            if 2 * d_form_macs < group.size(frames) * (d_s + d_t):
                with torch.autocast(a.device.type, enabled=False):
                    parts = (group.take(x) for x in (a, b, c, d))
                    error = error + _gram_squared_error_dd(*parts, c_s, c_t, shared).to(dtype)
            else:
                t_groups.append(group)
        errors.append(error)
        t_form.append((t_groups, a, None if shared else b, c, None if shared else d))
    if any(layer[0] for layer in t_form):
        flat = [x for layer in t_form for x in layer[1:]]
        t_errors = _TGramErrors.apply(normalize == "dim", [layer[0] for layer in t_form], *flat).unbind()
        errors = [e + t for e, t in zip(errors, t_errors)]
    return torch.stack(errors)


def _symmetric_blocks(frames: int) -> list[slice]:
    """The :data:`SYMMETRIC_BLOCKS` (or fewer, never empty) consecutive slices that split ``frames``."""
    bounds = sorted({round(frames * k / SYMMETRIC_BLOCKS) for k in range(SYMMETRIC_BLOCKS + 1)})
    return [slice(lo, hi) for lo, hi in zip(bounds, bounds[1:])]


class _TGramErrors(torch.autograd.Function):
    r"""``sum_b ||A B^T / c_S - C D^T / c_T||^2`` for several layers through ``T x T`` products.

    Inputs: a flag (``c = d``, the width, if True, else ``c = 1``), per layer the frame groups to
    cover (:func:`_frame_groups`), and per layer ``(A, B, C, D)`` with ``B`` / ``D`` None for a
    layer-wise Gram (``B = A``, ``D = C``). Per group the difference comes out of fused products,
    ``E = baddbmm(C D^T, A, B^T, beta=-c_S/c_T) = c_S (G^S - G^T)``, and its squared norm out of a
    dot product. A layer-wise ``E`` is symmetric: only its diagonal and lower blocks
    (:func:`_symmetric_blocks`) are computed (the lower ones count twice in the norm) and copied,
    transposed, into the upper ones for the backward. The backward is written out: with
    ``k = 2 g / c_S^2``, ``dA = k E B`` and ``dB = k E^T A``, and for a layer-wise Gram the single
    product ``dA = 2 k E A``: one ``T x T x d_S`` product fewer than autograd's, and no elementwise
    pass over ``E``. Gradients are zero at frames no group keeps. The teacher side (``C``, ``D``) gets
    no gradient. Autocast is off inside: everything stays in the inputs' (at least float32) dtype.
    """

    @staticmethod
    def forward(ctx, by_width: bool, layer_groups: list[list[_FrameGroup]], *flat: Tensor | None) -> Tensor:
        layers = [flat[i:i + 4] for i in range(0, len(flat), 4)]
        if any(ctx.needs_input_grad[4 + 4 * i] or ctx.needs_input_grad[5 + 4 * i] for i in range(len(layers))):
            raise ValueError("STaR Gram loss: the teacher states require gradients; pass them detached (the teacher is frozen)")
        errors, diffs, scales = [], [], []
        with torch.autocast(flat[0].device.type, enabled=False):
            for (a, b, c, d), groups in zip(layers, layer_groups):
                c_s, c_t = (a.shape[-1], c.shape[-1]) if by_width else (1, 1)
                error = a.new_zeros(())
                layer_diffs = []
                for group in groups:
                    ga, gc = group.take(a), group.take(c)
                    if b is None:
                        diff = ga.new_empty(ga.shape[0], ga.shape[1], ga.shape[1])
                        blocks = _symmetric_blocks(ga.shape[1])
                        for i, rows in enumerate(blocks):
                            for j, cols in enumerate(blocks[:i + 1]):
                                block = _fused_diff(ga[:, rows], ga[:, cols], gc[:, rows], gc[:, cols], c_s / c_t)
                                error = error + (1.0 if i == j else 2.0) * _squared_norm(block)
                                diff[:, rows, cols] = block
                                if i != j:
                                    diff[:, cols, rows] = block.transpose(1, 2)
                        layer_diffs.append(diff)
                    else:
                        diff = _fused_diff(ga, group.take(b), gc, group.take(d), c_s / c_t)
                        error = error + _squared_norm(diff)
                        layer_diffs.append(diff)
                errors.append(error / c_s**2)
                diffs.append(layer_diffs)
                scales.append(c_s)
        ctx.save_for_backward(*(x for a, b, _, _ in layers for x in (a, b)))
        ctx.layer_groups, ctx.diffs, ctx.scales = layer_groups, diffs, scales
        ctx.needs = [ctx.needs_input_grad[2 + 4 * i:4 + 4 * i] for i in range(len(layers))]
        return torch.stack(errors)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        grads: list[Tensor | None] = [None, None]
        with torch.autocast(grad.device.type, enabled=False):
            for i, (groups, diffs, c_s, (need_a, need_b)) in enumerate(
                    zip(ctx.layer_groups, ctx.diffs, ctx.scales, ctx.needs)):
                a, b = saved[2 * i:2 * i + 2]
                k = grad[i] * (2.0 / c_s**2)
                if b is None:
                    parts = [torch.bmm(diff, group.take(a)).mul_(2.0 * k) for group, diff in zip(groups, diffs)]
                    grads += [_scatter(a, groups, parts) if need_a else None, None, None, None]
                    continue
                grad_a = grad_b = None
                if need_a:
                    grad_a = _scatter(a, groups, [torch.bmm(diff, g.take(b)).mul_(k) for g, diff in zip(groups, diffs)])
                if need_b:
                    grad_b = _scatter(b, groups, [torch.bmm(diff.transpose(1, 2), g.take(a)).mul_(k)
                                                  for g, diff in zip(groups, diffs)])
                grads += [grad_a, grad_b, None, None]
        return tuple(grads)


def _fused_diff(a: Tensor, b: Tensor, c: Tensor, d: Tensor, ratio: float) -> Tensor:
    """``A B^T - ratio C D^T``, the teacher product first (equal inputs cancel exactly when ``ratio == 1``)."""
    return torch.baddbmm(torch.bmm(c, d.transpose(1, 2)), a, b.transpose(1, 2), beta=-ratio)


def _squared_norm(x: Tensor) -> Tensor:
    flat = x.reshape(-1)
    return torch.dot(flat, flat)


def _scatter(like: Tensor, groups: Sequence[_FrameGroup], parts: Sequence[Tensor]) -> Tensor:
    """A zero tensor shaped like ``like`` holding every group's part at the group's rows and frames."""
    if len(groups) == 1 and groups[0].is_everything:
        return parts[0]
    out = torch.zeros_like(like)
    for group, part in zip(groups, parts):
        out[group.rows, group.frames] = part
    return out


def _gram_squared_error_dd(a: Tensor, b: Tensor, c: Tensor, d: Tensor, c_s: float, c_t: float, shared: bool) -> Tensor:
    """``sum_b ||a_b b_b^T / c_s - c_b d_b^T / c_t||^2`` through ``d x d`` products, in float64."""
    a, b, c, d = (x.to(torch.float64) for x in (a, b, c, d))
    aa = a.transpose(1, 2) @ a
    bb = aa if shared else b.transpose(1, 2) @ b
    cc = c.transpose(1, 2) @ c
    dd = cc if shared else d.transpose(1, 2) @ d
    cross = (a.transpose(1, 2) @ c) * (b.transpose(1, 2) @ d)
    total = (aa * bb).sum() / c_s**2 + (cc * dd).sum() / c_t**2 - 2.0 * cross.sum() / (c_s * c_t)
    return total.clamp_min(0.0)


def _valid_pairs(padding_mask: Tensor | None, states: Sequence[Tensor]) -> Tensor:
    """Number of valid ``(b, i, j)`` frame pairs, the MSE denominator of :func:`gram_mse`."""
    first = states[0]
    valid = valid_frames(padding_mask, first.shape[0], first.shape[1], first.device)
    return valid.sum(dim=1).pow(2).sum()


def _weighted_sum(per_layer: Tensor, weights: Sequence[float] | None) -> Tensor:
    if weights is None:
        return per_layer.sum()
    return (per_layer * per_layer.new_tensor(list(weights))).sum()


def layerwise_tgm_loss(
    student_layers: Sequence[Tensor],
    teacher_layers: Sequence[Tensor],
    padding_mask: Tensor | None = None,
    normalize: str = "dim",
    layer_weights: Sequence[float] | None = None,
) -> Tensor:
    r"""Layer-wise TGM loss ``sum_l w_l * gram_mse(G(X_S^l), G(X_T^l))``.

    Args:
        student_layers: ``L`` tensors ``(B, T_S, d_S)`` (student layer outputs).
        teacher_layers: ``L`` tensors ``(B, T_T, d_T)`` paired 1:1 with the student's; ``d_T``
            may differ from ``d_S``. All tensors are cropped to the common frame count.
        padding_mask: ``(B, T)`` bool, True at padded frames.
        normalize: see :func:`temporal_gram`.
        layer_weights: optional ``L`` weights ``w_l`` (default all 1).

    Each layer costs one fused product (see :func:`_gram_squared_errors`).
    """
    _check_normalize(normalize)
    check_same_length(student_layers, teacher_layers, "layerwise_tgm_loss")
    n = len(student_layers)
    if layer_weights is not None and len(layer_weights) != n:
        raise ValueError(f"layerwise_tgm_loss: {len(layer_weights)} layer_weights for {n} layers")
    cropped, padding_mask = crop_to_common_length([*student_layers, *teacher_layers], padding_mask)
    s = _prepared_states(cropped[:n], padding_mask, normalize)
    t = _prepared_states(cropped[n:], padding_mask, normalize)
    return _layerwise_from_prepared(s, t, padding_mask, normalize, layer_weights)


def _layerwise_from_prepared(s: Sequence[Tensor], t: Sequence[Tensor], padding_mask: Tensor | None, normalize: str,
                           layer_weights: Sequence[float] | None = None) -> Tensor:
    """Layer-wise term from the prepared ``X^1..X^L``."""
    pairs = _valid_pairs(padding_mask, s)
    return _weighted_sum(safe_div(_gram_squared_errors(s, s, t, t, padding_mask, normalize), pairs), layer_weights)


def _intra_from_prepared(s: Sequence[Tensor], t: Sequence[Tensor], padding_mask: Tensor | None, normalize: str) -> Tensor:
    """Intra-layer term from the prepared ``X^0..X^L``."""
    pairs = _valid_pairs(padding_mask, s)
    return safe_div(_gram_squared_errors(s[:-1], s[1:], t[:-1], t[1:], padding_mask, normalize), pairs).sum()


def intra_layer_tgm_loss(
    student_states: Sequence[Tensor],
    teacher_states: Sequence[Tensor],
    padding_mask: Tensor | None = None,
    normalize: str = "dim",
) -> Tensor:
    r"""Intra-layer TGM loss ``sum_{l=1}^{L} gram_mse(X_S^{l-1} (X_S^l)^T, X_T^{l-1} (X_T^l)^T)``.

    Args:
        student_states: ``L + 1`` tensors ``[X^0, X^1, .., X^L]`` of shape ``(B, T, d_S)``
            where ``X^0`` is the pre-Transformer input.
        teacher_states: ``L + 1`` tensors of shape ``(B, T', d_T)``.
        padding_mask: ``(B, T)`` bool, True at padded frames.
        normalize: see :func:`temporal_gram`; ``"dim"`` divides by the model's own width
            (both factors of one model share it).

    Each layer costs one fused product (see :func:`_gram_squared_errors`).
    """
    _check_normalize(normalize)
    check_same_length(student_states, teacher_states, "intra_layer_tgm_loss")
    n = len(student_states)
    if n < 2:
        raise ValueError("intra_layer_tgm_loss needs L + 1 >= 2 states [X^0, X^1, ..]")
    cropped, padding_mask = crop_to_common_length([*student_states, *teacher_states], padding_mask)
    s = _prepared_states(cropped[:n], padding_mask, normalize)
    t = _prepared_states(cropped[n:], padding_mask, normalize)
    return _intra_from_prepared(s, t, padding_mask, normalize)


def avg_attention_kl(
    student_attn: Sequence[Tensor],
    teacher_attn: Sequence[Tensor],
    padding_mask: Tensor | None = None,
    eps: float = 1e-8,
) -> Tensor:
    r"""Sum over layers of the mean per-query KL between head-averaged attention maps.

    For layer ``l`` with head-averaged maps ``p = A_bar^{l,T}`` (teacher) and
    ``q = A_bar^{l,S}`` (student), each ``(B, T, T)`` (query, key):

    ``KL_{b,t} = sum_{j valid} p~_{btj} (log(p~_{btj} + eps) - log(q~_{btj} + eps))``

    where ``p~`` and ``q~`` are the rows restricted to the valid (unpadded) keys and
    renormalised to sum to one (a no-op when the model already masks padded keys).

    Reduction: ``L_l = sum_{(b,t) valid queries} KL_{b,t} / #valid query frames`` (batch
    pooled), and ``L = sum_l L_l``. The reference writes a *sum* over query frames; we take
    the mean so the scale does not grow with the utterance length.

    Args:
        student_attn: per-layer ``(B, H_S, T, T)`` post-softmax maps.
        teacher_attn: per-layer ``(B, H_T, T', T')`` maps, paired 1:1 with the student's layers;
            ``H_T`` may differ from ``H_S``. Maps are cropped to the common frame count.
        padding_mask: ``(B, T)`` bool, True at padded frames (excluded as queries and keys).
        eps: added inside the logs.

    The value is 0 whenever the head-averaged maps agree on the valid block (however the
    individual heads differ) and is invariant to any permutation of the heads.
    """
    check_same_length(student_attn, teacher_attn, "avg_attention_kl")
    for a in (*student_attn, *teacher_attn):
        if a.dim() != 4:
            raise ValueError(f"avg_attention_kl expects (B, H, T, T) maps, got shape {tuple(a.shape)}")
    n = len(student_attn)
    cropped, padding_mask = crop_to_common_length(
        [*student_attn, *teacher_attn], padding_mask, dims=(-2, -1)
    )
    total = None
    for a_s, a_t in zip(cropped[:n], cropped[n:]):
        q = to_compute(a_s).mean(dim=1)
        p = to_compute(a_t).mean(dim=1)
        b, t, _ = p.shape
        valid = valid_frames(padding_mask, b, t, p.device)
        key_valid = valid.unsqueeze(1)  # (B, 1, T_key)
        zero = p.new_zeros(())
        p = torch.where(key_valid, p, zero)
        q = torch.where(key_valid, q, zero)
        p = p / p.sum(dim=-1, keepdim=True).clamp_min(eps)
        q = q / q.sum(dim=-1, keepdim=True).clamp_min(eps)
        kl_terms = p * (torch.log(p + eps) - torch.log(q + eps))
        kl_rows = torch.where(key_valid, kl_terms, zero).sum(dim=-1)  # (B, T_query)
        kl_rows = torch.where(valid, kl_rows, zero)
        term = safe_div(kl_rows.sum(), valid.sum())
        total = term if total is None else total + term
    return total


def star_loss(
    student_states: Sequence[Tensor],
    teacher_states: Sequence[Tensor],
    padding_mask: Tensor | None = None,
    normalize: str = "dim",
    layerwise_weight: float = 1.0,
    intra_weight: float = 1.0,
    attn_weight: float = 0.0,
    student_attn: Sequence[Tensor] | None = None,
    teacher_attn: Sequence[Tensor] | None = None,
) -> dict[str, Tensor]:
    r"""STaR objective.

    ``loss = layerwise_weight * L_layer-wise(X^1..X^L) + intra_weight * L_intra(X^0..X^L)
    [+ attn_weight * L_avg-attn]``

    Args:
        student_states / teacher_states: ``L + 1`` tensors ``[X^0, X^1, .., X^L]`` each
            (``X^0`` = pre-Transformer input). The layer-wise term uses ``X^1..X^L`` (1:1),
            the intra-layer term the ``L`` pairs ``(X^{l-1}, X^l)``.
        padding_mask: ``(B, T)`` bool, True at padded frames.
        normalize: TGM normalisation, default ``"dim"`` (see module docstring).
        attn_weight: weight of the head-averaged attention KL; when > 0, ``student_attn`` and
            ``teacher_attn`` (lists of per-layer ``(B, H, T, T)`` post-softmax maps) are required.

    Returns a dict with ``"loss"`` (weighted total), ``"layerwise"``, ``"intra"`` (unweighted
    terms) and ``"attn"`` when ``attn_weight > 0``.
    """
    _check_normalize(normalize)
    check_same_length(student_states, teacher_states, "star_loss")
    if len(student_states) < 2:
        raise ValueError("star_loss needs L + 1 >= 2 states [X^0, X^1, ..]")
    if attn_weight and (student_attn is None or teacher_attn is None):
        raise ValueError("star_loss: attn_weight > 0 requires both student_attn and teacher_attn maps")
    # One crop for everything so that all terms see the same frames.
    n = len(student_states)
    cropped, padding_mask = crop_to_common_length([*student_states, *teacher_states], padding_mask)
    s, t = cropped[:n], cropped[n:]
    # Masking and normalising once per tensor serves both terms.
    s = _prepared_states(s, padding_mask, normalize)
    t = _prepared_states(t, padding_mask, normalize)
    layerwise = _layerwise_from_prepared(s[1:], t[1:], padding_mask, normalize)
    intra = _intra_from_prepared(s, t, padding_mask, normalize)
    out = {"layerwise": layerwise, "intra": intra}
    loss = layerwise_weight * layerwise + intra_weight * intra
    if attn_weight:
        attn = avg_attention_kl(student_attn, teacher_attn, padding_mask)
        out["attn"] = attn
        loss = loss + attn_weight * attn
    out["loss"] = loss
    return out
