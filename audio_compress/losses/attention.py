r"""Head-averaged attention-map distillation (STaR's ``L_avg-attn``, reference §1.2 (a)).

``A_bar^l = (1/H) sum_h A_h^l`` removes the need for equal head counts; the loss is the KL
divergence from the teacher's to the student's head-averaged row distribution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._common import check_same_length, crop_to_common_length, safe_div, to_compute, valid_frames


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
