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


def _prepared_states(states: Sequence[Tensor], padding_mask: Tensor | None, normalize: str) -> list[Tensor]:
    """``states`` in the compute dtype, padded frames zeroed, cosine-normalised if asked (done once per tensor)."""
    out = []
    for x in states:
        x = to_compute(x)
        if padding_mask is not None:
            pad = ~valid_frames(padding_mask, x.shape[0], x.shape[1], x.device)
            x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        if normalize == "cosine":
            x = F.normalize(x, p=2.0, dim=-1)
        out.append(x)
    return out


def _gram_squared_errors(s_left: Sequence[Tensor], s_right: Sequence[Tensor], t_left: Sequence[Tensor],
                         t_right: Sequence[Tensor], normalize: str) -> Tensor:
    r"""Per layer ``sum_{b,i,j} (G^S_{bij} - G^T_{bij})^2`` for the Grams ``G = left right^T / c``.

    Inputs are per-layer ``(B, T, d)`` tensors from :func:`_prepared_states` (padded frames zeroed,
    so padded pairs add nothing). The layers whose ``T x T`` form is cheaper go through one
    :class:`_TGramErrors` call (one autograd node for all of them; see there). When the channel
    widths are small against the frame count, the ``d x d`` form
    ``||A B^T - C D^T||^2 = <A^T A, B^T B> + <C^T C, D^T D> - 2 <A^T C, B^T D>`` is used instead;
    it subtracts large terms, so it runs in float64 and is chosen only when it needs under half
    the multiply-adds of the ``T x T`` form. Autocast is switched off: the products stay in
    float32 (or float64) whatever the activations' dtype.
    """
    errors: list[Tensor | None] = []
    t_form: list[tuple[Tensor, ...]] = []
    for layer in zip(s_left, s_right, t_left, t_right):
        dtype = torch.promote_types(layer[0].dtype, layer[2].dtype)  # one fused product needs one dtype
        a, b, c, d = (x.to(dtype) for x in layer)
        d_s, d_t, frames = a.shape[-1], c.shape[-1], a.shape[-2]
        shared = layer[1] is layer[0] and layer[3] is layer[2]
        d_form_macs = frames * (d_s * d_s + d_t * d_t + d_s * d_t) * (1 if shared else 2)
        if 2 * d_form_macs < frames * frames * (d_s + d_t):
            c_s, c_t = (d_s, d_t) if normalize == "dim" else (1, 1)
            with torch.autocast(a.device.type, enabled=False):
                errors.append(_gram_squared_error_dd(a, b, c, d, c_s, c_t, shared).to(a.dtype))
        else:
            errors.append(None)
            t_form.append((a, b if not shared else None, c, d if not shared else None))
    if t_form:
        flat = [x for layer in t_form for x in layer]
        t_errors = iter(_TGramErrors.apply(normalize == "dim", *flat).unbind())
        errors = [next(t_errors) if e is None else e for e in errors]
    return torch.stack(errors)


class _TGramErrors(torch.autograd.Function):
    r"""``sum_b ||A B^T / c_S - C D^T / c_T||^2`` for several layers through ``T x T`` products.

    Inputs: a flag (``c = d``, the width, if True, else ``c = 1``) and per layer ``(A, B, C, D)``
    with ``B`` / ``D`` None for a layer-wise Gram (``B = A``, ``D = C``). Per layer the difference
    comes out of one fused product, ``E = baddbmm(C D^T, A, B^T, beta=-c_S/c_T) = c_S (G^S - G^T)``,
    and its squared norm out of a dot product. The backward is written out: with ``k = 2 g / c_S^2``,
    ``dA = k E B`` and ``dB = k E^T A``, and for a layer-wise Gram (``E`` symmetric) the single
    product ``dA = 2 k E A``: one ``T x T x d_S`` product fewer than autograd's, and no
    elementwise pass over ``E``. The teacher side (``C``, ``D``) gets no gradient. Autocast is off
    inside: everything stays in the inputs' (at least float32) dtype.
    """

    @staticmethod
    def forward(ctx, by_width: bool, *flat: Tensor | None) -> Tensor:
        layers = [flat[i:i + 4] for i in range(0, len(flat), 4)]
        if any(ctx.needs_input_grad[3 + 4 * i] or ctx.needs_input_grad[4 + 4 * i] for i in range(len(layers))):
            raise ValueError("STaR Gram loss: the teacher states require gradients; pass them detached (the teacher is frozen)")
        errors, saved, scales = [], [], []
        with torch.autocast(flat[0].device.type, enabled=False):
            for a, b, c, d in layers:
                c_s, c_t = (a.shape[-1], c.shape[-1]) if by_width else (1, 1)
                right_s = a if b is None else b
                right_t = c if d is None else d
                # c_s * (G^S - G^T), so equal inputs cancel exactly when c_s == c_t.
                diff = torch.baddbmm(torch.bmm(c, right_t.transpose(1, 2)), a, right_s.transpose(1, 2), beta=-c_s / c_t)
                flat_diff = diff.reshape(-1)
                errors.append(torch.dot(flat_diff, flat_diff) / c_s**2)
                saved += [a, right_s, diff]
                scales.append(c_s)
        ctx.save_for_backward(*saved)
        ctx.shared = [b is None for _, b, _, _ in layers]
        ctx.scales = scales
        ctx.needs = [ctx.needs_input_grad[1 + 4 * i:3 + 4 * i] for i in range(len(layers))]
        return torch.stack(errors)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        grads: list[Tensor | None] = [None]
        with torch.autocast(grad.device.type, enabled=False):
            for i, (shared, c_s, (need_a, need_b)) in enumerate(zip(ctx.shared, ctx.scales, ctx.needs)):
                a, b, diff = saved[3 * i:3 * i + 3]
                k = grad[i] * (2.0 / c_s**2)
                if shared:
                    grads += [torch.bmm(diff, a).mul_(2.0 * k) if need_a else None, None, None, None]
                    continue
                grad_a = torch.bmm(diff, b).mul_(k) if need_a else None
                grad_b = torch.bmm(diff.transpose(1, 2), a).mul_(k) if need_b else None
                grads += [grad_a, grad_b, None, None]
        return tuple(grads)


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
    return _weighted_sum(safe_div(_gram_squared_errors(s, s, t, t, normalize), pairs), layer_weights)


def _intra_from_prepared(s: Sequence[Tensor], t: Sequence[Tensor], padding_mask: Tensor | None, normalize: str) -> Tensor:
    """Intra-layer term from the prepared ``X^0..X^L``."""
    pairs = _valid_pairs(padding_mask, s)
    return safe_div(_gram_squared_errors(s[:-1], s[1:], t[:-1], t[1:], normalize), pairs).sum()


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
