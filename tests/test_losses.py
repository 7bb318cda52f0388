"""Tests for audio_compress.losses (reference speech.md §8 "Loss identities")."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from audio_compress.losses import (
    avg_attention_kl,
    crop_to_common_length,
    distilhubert_loss,
    gram_mse,
    intra_layer_tgm_loss,
    layerwise_tgm_loss,
    masking_distillation_loss,
    plain_distillation_loss,
    sample_span_mask,
    star_loss,
    temporal_gram,
)

DT = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0, dtype=DT):
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype)


def _row_orthonormal(d_in: int, d_out: int, seed: int = 0) -> torch.Tensor:
    """(d_in, d_out) matrix Q with Q Q^T = I (d_out >= d_in), so X -> X Q preserves X X^T."""
    q, _ = torch.linalg.qr(_randn(d_out, d_in, seed=seed))
    return q.T.contiguous()


def _pad_mask(lengths, t):
    return torch.arange(t).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)


# --------------------------------------------------------------------------- temporal Gram


def test_temporal_gram_symmetric_psd_and_shape():
    x = _randn(3, 7, 5)
    for norm in ("none", "dim", "cosine"):
        g = temporal_gram(x, normalize=norm)
        assert g.shape == (3, 7, 7)
        torch.testing.assert_close(g, g.transpose(1, 2))
        eig = torch.linalg.eigvalsh(g)
        assert eig.min() > -1e-10
    # intra-layer Gram X Y^T is generally not symmetric
    g2 = temporal_gram(x, _randn(3, 7, 5, seed=1), normalize="none")
    assert not torch.allclose(g2, g2.transpose(1, 2))


def test_temporal_gram_identical_frames_and_normalizations():
    v = torch.tensor([1.0, -2.0, 3.0], dtype=DT)  # ||v||^2 = 14
    x = v.expand(2, 4, 3)
    torch.testing.assert_close(temporal_gram(x, normalize="none"), torch.full((2, 4, 4), 14.0, dtype=DT))
    torch.testing.assert_close(temporal_gram(x, normalize="dim"), torch.full((2, 4, 4), 14.0 / 3, dtype=DT))
    torch.testing.assert_close(temporal_gram(x, normalize="cosine"), torch.ones(2, 4, 4, dtype=DT))


def test_temporal_gram_padding_rows_cols_zero():
    x = _randn(2, 5, 3)
    x[0, 3:] = float("nan")  # garbage in padding must not leak
    pm = _pad_mask([3, 5], 5)
    for norm in ("none", "dim", "cosine"):
        g = temporal_gram(x, padding_mask=pm, normalize=norm)
        assert torch.isfinite(g).all()
        assert (g[0, 3:, :] == 0).all() and (g[0, :, 3:] == 0).all()
        torch.testing.assert_close(g[0, :3, :3], temporal_gram(x[:1, :3], normalize=norm)[0])


def test_unknown_normalize_raises():
    x = _randn(1, 3, 2)
    with pytest.raises(ValueError, match="none.*dim.*cosine"):
        temporal_gram(x, normalize="l2")
    with pytest.raises(ValueError, match="valid options"):
        layerwise_tgm_loss([x], [x], normalize="frobenius")


# --------------------------------------------------------------------------- hand-computed


def test_gram_mse_and_layerwise_hand_example():
    # Student (d=2): x_s = [[1,0],[1,1]]      -> G_s = [[1,1],[1,2]]
    # Teacher (d=3): x_t = [[1,0,0],[0,2,0]]  -> G_t = [[1,0],[0,4]]
    # none:   diff = [[0,1],[1,-2]], squares 0+1+1+4 = 6, mean over 4 pairs = 1.5
    # dim:    G_s/2 = [[.5,.5],[.5,1]], G_t/3 = [[1/3,0],[0,4/3]],
    #         diff = [1/6, 1/2, 1/2, -1/3], squares (1 + 9 + 9 + 4)/36 = 23/36, mean = 23/144
    # cosine: G_s = [[1, 1/sqrt2],[1/sqrt2, 1]], G_t = I, squares 0 + 1/2 + 1/2 + 0 = 1, mean 0.25
    xs = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]], dtype=DT)
    xt = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]], dtype=DT)
    gs = temporal_gram(xs, normalize="none")
    gt = temporal_gram(xt, normalize="none")
    torch.testing.assert_close(gs, torch.tensor([[[1.0, 1.0], [1.0, 2.0]]], dtype=DT))
    torch.testing.assert_close(gt, torch.tensor([[[1.0, 0.0], [0.0, 4.0]]], dtype=DT))
    assert gram_mse(gs, gt).item() == pytest.approx(1.5, abs=1e-12)
    assert layerwise_tgm_loss([xs], [xt], normalize="none").item() == pytest.approx(1.5, abs=1e-12)
    assert layerwise_tgm_loss([xs], [xt], normalize="dim").item() == pytest.approx(23 / 144, abs=1e-12)
    assert layerwise_tgm_loss([xs], [xt], normalize="cosine").item() == pytest.approx(0.25, abs=1e-12)
    # Second layer identical (contributes 0): sum over layers, optional weights.
    y = _randn(1, 2, 4)
    assert layerwise_tgm_loss([xs, y], [xt, y], normalize="none").item() == pytest.approx(1.5)
    w = layerwise_tgm_loss([xs, y], [xt, y], normalize="none", layer_weights=[2.0, 5.0])
    assert w.item() == pytest.approx(3.0)


def test_intra_layer_hand_example():
    # Student (d=2): X0 = [[1,0],[0,1]], X1 = [[1,1],[2,0]]  -> X0 X1^T = [[1,2],[1,0]]
    # Teacher (d=1): X0 = [[1],[2]],     X1 = [[3],[1]]      -> X0 X1^T = [[3,1],[6,2]]
    # diff = [[-2,1],[-5,-2]], squares 4+1+25+4 = 34, mean = 8.5      (normalize none)
    # dim: [[.5,1],[.5,0]] - [[3,1],[6,2]] = [[-2.5,0],[-5.5,-2]], (6.25+0+30.25+4)/4 = 10.125
    s = [torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=DT), torch.tensor([[[1.0, 1.0], [2.0, 0.0]]], dtype=DT)]
    t = [torch.tensor([[[1.0], [2.0]]], dtype=DT), torch.tensor([[[3.0], [1.0]]], dtype=DT)]
    assert intra_layer_tgm_loss(s, t, normalize="none").item() == pytest.approx(8.5)
    assert intra_layer_tgm_loss(s, t, normalize="dim").item() == pytest.approx(10.125)


# --------------------------------------------------------------------------- TGM identities


@pytest.mark.parametrize("normalize", ["none", "dim", "cosine"])
def test_tgm_zero_when_equal(normalize):
    states = [_randn(2, 9, 6, seed=i) for i in range(4)]
    pm = _pad_mask([9, 6], 9)
    assert layerwise_tgm_loss(states, [s.clone() for s in states], pm, normalize).item() == 0.0
    assert intra_layer_tgm_loss(states, [s.clone() for s in states], pm, normalize).item() == 0.0
    out = star_loss(states, [s.clone() for s in states], pm, normalize)
    assert out["loss"].item() == 0.0


@pytest.mark.parametrize("normalize", ["none", "cosine"])
@pytest.mark.parametrize("d_s", [8, 12])  # equal to and wider than the teacher
def test_tgm_orthogonal_invariance(normalize, d_s):
    d_t = 8
    teacher = [_randn(2, 10, d_t, seed=i) for i in range(4)]
    q = _row_orthonormal(d_t, d_s, seed=42)
    torch.testing.assert_close(q @ q.T, torch.eye(d_t, dtype=DT))
    student = [t @ q for t in teacher]  # same Q on every layer
    pm = _pad_mask([10, 7], 10)
    assert layerwise_tgm_loss(student, teacher, pm, normalize).item() < 1e-20
    assert intra_layer_tgm_loss(student, teacher, pm, normalize).item() < 1e-20
    # a different random student is far from zero
    other = [_randn(2, 10, d_s, seed=100 + i) for i in range(4)]
    assert layerwise_tgm_loss(other, teacher, pm, normalize).item() > 1e-3


def test_tgm_dim_orthogonal_invariance_equal_dims():
    teacher = [_randn(2, 10, 6, seed=i) for i in range(3)]
    q = _row_orthonormal(6, 6, seed=3)
    student = [t @ q for t in teacher]
    assert layerwise_tgm_loss(student, teacher, normalize="dim").item() < 1e-20
    assert intra_layer_tgm_loss(student, teacher, normalize="dim").item() < 1e-20
    # with a wider student, "dim" rescales by d_s vs d_t, so it is not invariant (documented)
    q2 = _row_orthonormal(6, 9, seed=3)
    assert layerwise_tgm_loss([t @ q2 for t in teacher], teacher, normalize="dim").item() > 1e-3


@pytest.mark.parametrize("normalize", ["none", "dim", "cosine"])
def test_tgm_padding_ignored(normalize):
    t_len, lengths = 8, [5, 8]
    pm = _pad_mask(lengths, t_len)
    s = [_randn(2, t_len, 4, seed=i) for i in range(3)]
    t = [_randn(2, t_len, 6, seed=10 + i) for i in range(3)]
    base_lw = layerwise_tgm_loss(s, t, pm, normalize)
    base_in = intra_layer_tgm_loss(s, t, pm, normalize)
    # garbage in padded frames changes nothing
    s2 = [x.clone() for x in s]
    t2 = [x.clone() for x in t]
    for x in (*s2, *t2):
        x[0, 5:] = 1e3 * _randn(3, x.shape[-1], seed=99)
    torch.testing.assert_close(layerwise_tgm_loss(s2, t2, pm, normalize), base_lw)
    torch.testing.assert_close(intra_layer_tgm_loss(s2, t2, pm, normalize), base_in)
    # batch-pooled: (SSE_row0 + SSE_row1) / (5^2 + 8^2)
    r0 = layerwise_tgm_loss([x[:1, :5] for x in s], [x[:1, :5] for x in t], normalize=normalize)
    r1 = layerwise_tgm_loss([x[1:] for x in s], [x[1:] for x in t], normalize=normalize)
    torch.testing.assert_close(base_lw, (25 * r0 + 64 * r1) / (25 + 64))
    # a padded batch of two copies of one row equals the unpadded single-row loss
    dup_s = [torch.cat([x[:1], x[:1]]) for x in s2]
    dup_t = [torch.cat([x[:1], x[:1]]) for x in t2]
    for x in (*dup_s, *dup_t):
        x[1, 5:] = -7.0
    pm_dup = _pad_mask([5, 5], t_len)
    torch.testing.assert_close(layerwise_tgm_loss(dup_s, dup_t, pm_dup, normalize), r0)


def test_tgm_crops_teacher_one_frame_longer():
    s = [_randn(2, 6, 4, seed=i) for i in range(3)]
    t = [_randn(2, 7, 8, seed=10 + i) for i in range(3)]
    pm = _pad_mask([6, 4], 6)
    cropped = [x[:, :6] for x in t]
    torch.testing.assert_close(layerwise_tgm_loss(s, t, pm), layerwise_tgm_loss(s, cropped, pm))
    torch.testing.assert_close(intra_layer_tgm_loss(s, t, pm), intra_layer_tgm_loss(s, cropped, pm))
    # one teacher layer a frame shorter than the others: everything cropped to 5
    t_short = [x.clone() for x in t]
    t_short[1] = t_short[1][:, :5]
    ref = layerwise_tgm_loss([x[:, :5] for x in s], [x[:, :5] for x in t], pm[:, :5])
    torch.testing.assert_close(layerwise_tgm_loss(s, t_short, pm), ref)
    (a, b), m = crop_to_common_length([s[0], t[0]], pm)
    assert a.shape[1] == b.shape[1] == m.shape[1] == 6


def test_length_mismatch_errors():
    x = _randn(1, 4, 3)
    with pytest.raises(ValueError, match="1:1"):
        layerwise_tgm_loss([x, x], [x])
    with pytest.raises(ValueError, match="1:1"):
        intra_layer_tgm_loss([x, x, x], [x, x])
    with pytest.raises(ValueError, match="layer_weights"):
        layerwise_tgm_loss([x, x], [x, x], layer_weights=[1.0])


def test_star_loss_composition():
    s = [_randn(2, 8, 4, seed=i) for i in range(4)]
    t = [_randn(2, 8, 6, seed=10 + i) for i in range(4)]
    pm = _pad_mask([8, 6], 8)
    out = star_loss(s, t, pm)
    assert set(out) == {"loss", "layerwise", "intra"}
    torch.testing.assert_close(out["layerwise"], layerwise_tgm_loss(s[1:], t[1:], pm))
    torch.testing.assert_close(out["intra"], intra_layer_tgm_loss(s, t, pm))
    torch.testing.assert_close(out["loss"], out["layerwise"] + out["intra"])
    out2 = star_loss(s, t, pm, normalize="cosine", layerwise_weight=0.5, intra_weight=2.0)
    torch.testing.assert_close(out2["loss"], 0.5 * out2["layerwise"] + 2.0 * out2["intra"])
    with pytest.raises(ValueError, match="attn"):
        star_loss(s, t, pm, attn_weight=1.0)
    sa = [torch.softmax(_randn(2, 2, 8, 8, seed=20 + i), -1) for i in range(3)]
    ta = [torch.softmax(_randn(2, 3, 8, 8, seed=30 + i), -1) for i in range(3)]
    out3 = star_loss(s, t, pm, attn_weight=0.3, student_attn=sa, teacher_attn=ta)
    torch.testing.assert_close(out3["attn"], avg_attention_kl(sa, ta, pm))
    torch.testing.assert_close(out3["loss"], out3["layerwise"] + out3["intra"] + 0.3 * out3["attn"])


# --------------------------------------------------------------------------- attention KL


def _attn(b, h, t, seed, pm=None):
    logits = _randn(b, h, t, t, seed=seed)
    if pm is not None:
        logits = logits.masked_fill(pm[:, None, None, :], float("-inf"))
    return torch.softmax(logits, dim=-1)


def test_attention_kl_zero_when_head_average_matches():
    a, b = _attn(2, 1, 6, 0), _attn(2, 1, 6, 1)
    m = (a + b) / 2
    teacher = torch.cat([a, b], dim=1)  # 2 heads
    student = torch.cat([m, m, a, b], dim=1)  # 4 different heads, same average
    assert avg_attention_kl([student], [teacher]).item() == pytest.approx(0.0, abs=1e-12)
    student2 = torch.cat([b, a, a, b], dim=1)
    assert avg_attention_kl([student, student2], [teacher, teacher]).item() == pytest.approx(0.0, abs=1e-12)


def test_attention_kl_positive_and_permutation_invariant():
    pm = _pad_mask([6, 4], 6)
    s = [_attn(2, 4, 6, 10 + i, pm) for i in range(2)]
    t = [_attn(2, 3, 6, 20 + i, pm) for i in range(2)]
    val = avg_attention_kl(s, t, pm)
    assert val.item() > 0
    perm_s = [x[:, [2, 0, 3, 1]] for x in s]
    perm_t = [x[:, [1, 2, 0]] for x in t]
    torch.testing.assert_close(avg_attention_kl(perm_s, perm_t, pm), val)
    # reference value without padding: KL(p||q) per row, mean over rows, sum over layers
    ref = 0.0
    s0 = [_attn(2, 4, 6, 10 + i) for i in range(2)]
    t0 = [_attn(2, 3, 6, 20 + i) for i in range(2)]
    for a_s, a_t in zip(s0, t0):
        p, q = a_t.mean(1), a_s.mean(1)
        ref += (p * (p.log() - q.log())).sum(-1).mean()
    torch.testing.assert_close(avg_attention_kl(s0, t0), ref, atol=1e-7, rtol=1e-6)


def test_attention_kl_padding_ignored():
    pm = _pad_mask([4, 6], 6)
    s = _attn(2, 2, 6, 1, pm)
    t = _attn(2, 3, 6, 2, pm)
    base = avg_attention_kl([s], [t], pm)
    s2, t2 = s.clone(), t.clone()
    s2[0, :, 4:, :] = 0.37  # garbage rows of padded queries
    t2[0, :, 4:, :] = 0.11
    torch.testing.assert_close(avg_attention_kl([s2], [t2], pm), base)
    # equals the pooled single-row values: (4 * kl_row0 + 6 * kl_row1) / 10
    k0 = avg_attention_kl([s[:1, :, :4, :4]], [t[:1, :, :4, :4]])
    k1 = avg_attention_kl([s[1:]], [t[1:]])
    torch.testing.assert_close(base, (4 * k0 + 6 * k1) / 10)


# --------------------------------------------------------------------------- ARM masking loss


def test_masking_loss_hand_example():
    # B=1, T=3, D=2, two layers (hint, last); mask = [1, 0, 0].
    # hint: P=[[1,1],[0,0],[2,0]], H=[[0,1],[0,0],[0,0]], H~=[[1,1],[1,1],[2,2]]
    #   frame0 (masked, vs H):    ((1-0)^2 + 0)/2 = 0.5
    #   frame1 (unmasked, vs H~): (1 + 1)/2       = 1
    #   frame2 (unmasked, vs H~): (0 + 4)/2       = 2     -> L_hint = 3.5/3 = 7/6
    # last: P=0, H=[[2,0],[9,9],[9,9]], H~=[[9,9],[0,2],[0,0]]
    #   frame0: 4/2 = 2, frame1: 4/2 = 2, frame2: 0       -> L_last = 4/3
    # total = 4/3 + 0.1 * 7/6 = 1.45
    # With frame2 padded: L_hint = 1.5/2 = 0.75, L_last = 4/2 = 2, total = 2.075
    t = lambda rows: torch.tensor([rows], dtype=DT)  # noqa: E731
    P = [t([[1, 1], [0, 0], [2, 0]]), t([[0, 0], [0, 0], [0, 0]])]
    H = [t([[0, 1], [0, 0], [0, 0]]), t([[2, 0], [9, 9], [9, 9]])]
    Hm = [t([[1, 1], [1, 1], [2, 2]]), t([[9, 9], [0, 2], [0, 0]])]
    mask = torch.tensor([[True, False, False]])
    out = masking_distillation_loss(P, H, Hm, mask)
    assert out["loss"].item() == pytest.approx(1.45)
    assert out["last"].item() == pytest.approx(4 / 3)
    assert out["hints"].item() == pytest.approx(7 / 6)
    torch.testing.assert_close(out["per_layer"], torch.tensor([7 / 6, 4 / 3], dtype=DT))
    pm = torch.tensor([[False, False, True]])
    outp = masking_distillation_loss(P, H, Hm, mask, pm)
    assert outp["loss"].item() == pytest.approx(2.075)
    # garbage (even NaN) in the padded frame does not matter
    P2 = [p.clone() for p in P]
    P2[1][0, 2] = float("nan")
    assert masking_distillation_loss(P2, H, Hm, mask, pm)["loss"].item() == pytest.approx(2.075)


def test_masking_loss_worked_example_delta():
    b, t, d, n_layers = 2, 10, 8, 4
    mask = sample_span_mask((b, t), 0.5, 3, generator=_gen(1))
    n_masked = int(mask.sum())
    assert n_masked > 0
    deltas = [0.5, 1.5, -2.0, 3.0]
    Hm = [_randn(b, t, d, seed=i) for i in range(n_layers)]
    P = [h.clone() for h in Hm]  # prediction equals the masked-teacher output everywhere
    H = []
    for i, h in enumerate(Hm):
        clean = _randn(b, t, d, seed=50 + i)  # arbitrary on unmasked frames
        clean = torch.where(mask[..., None], h + deltas[i], clean)
        H.append(clean)
    out = masking_distillation_loss(P, H, Hm, mask)
    expected = [n_masked / (b * t) * dl**2 for dl in deltas]
    torch.testing.assert_close(out["per_layer"], torch.tensor(expected, dtype=DT))
    assert out["last"].item() == pytest.approx(expected[-1])
    assert out["loss"].item() == pytest.approx(1.0 * expected[-1] + 0.1 * sum(expected[:-1]))
    # with padding: |M ∩ valid| / N_valid
    pm = _pad_mask([7, 10], t)
    outp = masking_distillation_loss(P, H, Hm, mask, pm)
    n_mv = int((mask & ~pm).sum())
    assert outp["last"].item() == pytest.approx(n_mv / 17 * deltas[-1] ** 2)


def test_masking_loss_empty_mask_equals_plain_mse():
    b, t, d = 3, 7, 5
    P = [_randn(b, t, d, seed=i) for i in range(3)]
    H = [_randn(b, t, d, seed=10 + i) for i in range(3)]
    empty = torch.zeros(b, t, dtype=torch.bool)
    out = masking_distillation_loss(P, H, [h.clone() for h in H], empty)
    mses = [F.mse_loss(p, h) for p, h in zip(P, H)]
    torch.testing.assert_close(out["per_layer"], torch.stack(mses))
    torch.testing.assert_close(out["loss"], mses[-1] + 0.1 * (mses[0] + mses[1]))
    plain = plain_distillation_loss(P, H)
    for k in ("loss", "last", "hints", "per_layer"):
        torch.testing.assert_close(plain[k], out[k])
    # plain with padding = mean over valid frames and dims
    pm = _pad_mask([7, 3, 5], t)
    valid = ~pm
    plain_p = plain_distillation_loss(P, H, pm, last_weight=2.0, hint_weight=0.5)
    ref = [((p - h) ** 2)[valid].mean() for p, h in zip(P, H)]
    torch.testing.assert_close(plain_p["loss"], 2.0 * ref[-1] + 0.5 * (ref[0] + ref[1]))


def test_masking_loss_mask_matters_and_crops():
    b, t, d = 2, 6, 4
    P = [_randn(b, t, d, seed=1)]
    H = [_randn(b, t + 1, d, seed=2)]  # teacher one frame longer
    Hm = [_randn(b, t + 1, d, seed=3)]
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[:, 1:3] = True
    out = masking_distillation_loss(P, H, Hm, mask)
    e_clean = ((P[0] - H[0][:, :t]) ** 2).mean(-1)
    e_masked = ((P[0] - Hm[0][:, :t]) ** 2).mean(-1)
    ref = torch.where(mask, e_clean, e_masked).mean()
    torch.testing.assert_close(out["loss"], ref)
    torch.testing.assert_close(out["hints"], torch.zeros((), dtype=DT))


# --------------------------------------------------------------------------- span mask


def _runs(row: torch.Tensor):
    """List of (start, length) of the True runs of a 1-D bool tensor."""
    runs, start = [], None
    vals = row.tolist() + [False]
    for i, v in enumerate(vals):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


@pytest.mark.parametrize("min_space", [1, 3])
def test_span_mask_structure(min_space):
    b, t, ell = 40, 300, 10
    lengths = torch.randint(20, t + 1, (b,), generator=_gen(5)).tolist()
    pm = _pad_mask(lengths, t)
    m = sample_span_mask((b, t), 0.65, ell, pm, min_space=min_space, generator=_gen(7))
    assert m.dtype == torch.bool and m.shape == (b, t)
    assert not (m & pm).any()  # padding never masked
    for r in range(b):
        runs = _runs(m[r])
        assert all(length == ell for _, length in runs)  # exact span lengths, no overlap
        for (s0, l0), (s1, _) in zip(runs, runs[1:]):
            assert s1 - (s0 + l0) >= min_space
        n = lengths[r]
        requested = max(2, math.floor(0.65 * n / ell))  # lower end of probabilistic rounding
        requested_hi = max(2, math.floor(0.65 * n / ell) + 1)
        assert len(runs) <= requested_hi
        # jammed rows: every free gap < ell, so k >= (n - ell + 1) / (2 ell + 2 s - 1)
        jam_lower = math.ceil((n - ell + 1) / (2 * ell + 2 * min_space - 1))
        assert len(runs) >= min(requested, max(jam_lower, 0))


def test_span_mask_count_when_room():
    b, t, ell, p = 200, 997, 10, 0.23
    m = sample_span_mask((b, t), p, ell, generator=_gen(3))
    x = p * t / ell  # 22.931 -> 22 or 23 spans (each blocks < 21 starts, so they always fit)
    counts = [len(_runs(m[r])) for r in range(b)]
    assert set(counts) <= {math.floor(x), math.ceil(x)}
    # probabilistic rounding: mean count ~= x
    assert abs(sum(counts) / b - x) < 0.1
    assert abs(m.float().mean().item() - p) < 0.01


def test_span_mask_fraction_bounds():
    b, t, ell = 100, 800, 10
    low = sample_span_mask((b, t), 0.4, ell, generator=_gen(0)).float().mean().item()
    assert abs(low - 0.4) < 0.01
    high = sample_span_mask((b, t), 0.8, ell, generator=_gen(0)).float().mean().item()
    # No overlap caps the fraction: at most the requested p (+ one rounding span, ell/t), and
    # at least the jammed-configuration bound ell / (2 ell + 2 min_space - 1) = 10/21 ~ 0.476.
    # Random sequential placement jams at ~0.69 for these settings.
    assert 10 / 21 < high <= 0.8 + ell / t
    assert 0.6 < high < 0.78


def test_span_mask_short_rows_and_min_masks():
    pm = _pad_mask([5, 15, 0, 40], 40)
    m = sample_span_mask((4, 40), 0.1, 10, pm, min_masks=2, generator=_gen(0))
    assert not m[0].any()  # too short for one span
    assert m[1].sum() == 10  # room for exactly one of the two min_masks spans
    assert not m[2].any()  # fully padded row
    assert len(_runs(m[3])) == 2 and m[3].sum() == 20  # min_masks enforced
    assert not (m & pm).any()
    # no padding mask at all, T shorter than mask_length
    assert not sample_span_mask((3, 4), 0.9, 10, generator=_gen(0)).any()


def test_span_mask_deterministic():
    a = sample_span_mask((8, 200), 0.5, 10, generator=_gen(123))
    b = sample_span_mask((8, 200), 0.5, 10, generator=_gen(123))
    c = sample_span_mask((8, 200), 0.5, 10, generator=_gen(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --------------------------------------------------------------------------- DistilHuBERT


def test_distilhubert_identities():
    y = _randn(2, 3, 5, 8)
    out = distilhubert_loss(y.clone(), y)
    assert out["l1"].item() == 0.0
    assert out["cos"].item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.3132617, abs=1e-6)
    e1 = torch.tensor([1.0, 0.0], dtype=DT).expand(1, 1, 3, 2)
    e2 = torch.tensor([0.0, 1.0], dtype=DT).expand(1, 1, 3, 2)
    orth = distilhubert_loss(e1, e2)
    assert orth["cos"].item() == pytest.approx(math.log(2), abs=1e-7)
    assert orth["l1"].item() == pytest.approx(1.0)  # |1-0| and |0-1| in both dims
    assert orth["loss"].item() == pytest.approx(1.0 + math.log(2))
    opp = distilhubert_loss(e1, -e1, cos_weight=2.0)
    assert opp["cos"].item() == pytest.approx(math.log1p(math.e), abs=1e-7)
    assert opp["l1"].item() == pytest.approx(1.0)  # (2 + 0) / 2
    assert opp["loss"].item() == pytest.approx(1.0 + 2.0 * 1.3132617, abs=1e-6)


def test_distilhubert_padding_and_crop():
    pred, tgt = _randn(2, 3, 6, 4, seed=1), _randn(2, 3, 7, 4, seed=2)  # target 1 frame longer
    pm = _pad_mask([4, 6], 6)
    out = distilhubert_loss(pred, tgt, pm)
    valid = (~pm)[:, None, :].expand(2, 3, 6)
    t6 = tgt[:, :, :6]
    l1 = (pred - t6).abs()[valid].mean()
    cos = -F.logsigmoid(F.cosine_similarity(pred, t6, dim=-1))[valid].mean()
    torch.testing.assert_close(out["l1"], l1)
    torch.testing.assert_close(out["cos"], cos)
    torch.testing.assert_close(out["loss"], l1 + cos)
    pred2 = pred.clone()
    pred2[0, :, 4:] = 1e4
    torch.testing.assert_close(distilhubert_loss(pred2, tgt, pm)["loss"], out["loss"])


# --------------------------------------------------------------------------- gradients / precision


def test_gradcheck_float64():
    pm = _pad_mask([5, 3], 5)
    s = [_randn(2, 5, 3, seed=i).requires_grad_() for i in range(3)]
    t = [_randn(2, 5, 4, seed=10 + i) for i in range(3)]
    for norm in ("none", "dim", "cosine"):
        assert torch.autograd.gradcheck(lambda *xs, norm=norm: star_loss(list(xs), t, pm, norm)["loss"], s)
    a = torch.softmax(_randn(2, 2, 5, 5, seed=3), -1).requires_grad_()
    b = torch.softmax(_randn(2, 3, 5, 5, seed=4), -1)
    assert torch.autograd.gradcheck(lambda x: avg_attention_kl([x], [b], pm), (a,))
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[:, 1:3] = True
    assert torch.autograd.gradcheck(
        lambda x: masking_distillation_loss([x], [t[0]], [t[1]], mask, pm)["loss"],
        (_randn(2, 5, 4, seed=7).requires_grad_(),),
    )
    assert torch.autograd.gradcheck(
        lambda x: distilhubert_loss(x, t[0][:, None].expand(2, 2, 5, 4), pm)["loss"],
        (_randn(2, 2, 5, 4, seed=8).requires_grad_(),),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_finite_and_differentiable(dtype):
    # Raw Gram entries here are ~ 30*30*256 ~ 2e5 > fp16 max (65504): the float32 upcast matters.
    pm = _pad_mask([12, 9], 12)
    s = [(30 * _randn(2, 12, 256, seed=i, dtype=torch.float32)).to(dtype).requires_grad_() for i in range(3)]
    t = [(30 * _randn(2, 12, 384, seed=10 + i, dtype=torch.float32)).to(dtype) for i in range(3)]
    for norm in ("none", "dim", "cosine"):
        out = star_loss(s, t, pm, norm)
        assert out["loss"].dtype == torch.float32
        assert torch.isfinite(out["loss"])
        grads = torch.autograd.grad(out["loss"] / out["loss"].detach(), s)
        assert all(torch.isfinite(g.float()).all() for g in grads)
    p = [x.detach().clone().requires_grad_() for x in s]
    m = masking_distillation_loss(p, [x.detach() for x in s], None, None, pm)["loss"]
    m.backward()
    assert torch.isfinite(m) and all(x.grad is not None for x in p)
    sa = torch.softmax(_randn(2, 2, 12, 12, dtype=torch.float32), -1).to(dtype).requires_grad_()
    ta = torch.softmax(_randn(2, 4, 12, 12, seed=1, dtype=torch.float32), -1).to(dtype)
    kl = avg_attention_kl([sa], [ta], pm)
    kl.backward()
    assert torch.isfinite(kl) and torch.isfinite(sa.grad.float()).all()
    d = distilhubert_loss(s[0][:, None], t[0][:, None, :, :256], pm)["loss"]
    assert torch.isfinite(d)
