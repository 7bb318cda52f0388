"""The inference / loss optimisations of issue 16 change no output.

Each test compares the optimised path with a reference: the map-materialising attention path
kept in :class:`SelfAttention`, the weight norm recomputed under autograd, and, written here,
copies of the computations they replaced (the masked GroupNorm and the per-layer Gram loop).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import audio_compress.losses.star as star_module
import audio_compress.models.cnn as cnn_module
from audio_compress.losses.star import intra_layer_tgm_loss, layerwise_tgm_loss, star_loss
from audio_compress.models import build_student
from audio_compress.models.cnn import ConvBlock, ConvFeatureExtractor
from audio_compress.models.transformer import PositionalConv, TransformerEncoder

TOL = 1e-5


def _padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    wavs = torch.randn(len(lengths), max(lengths), generator=generator)
    padding_mask = torch.arange(max(lengths))[None] >= torch.tensor(lengths)[:, None]
    return wavs, padding_mask


# ---------------------------------------------------------------- attention


def test_needs_weights_follows_reuse_pattern():
    encoder = TransformerEncoder(16, 32, 2, [True, False, True, True, False, False], 0.0, 0.0, 0.0, 4, 2)
    # Only a computing layer followed by another computing layer (or last) can skip its map.
    assert encoder._needs_weights(False) == [True, True, False, True, True, True]
    assert encoder._needs_weights(True) == [True] * 6


@pytest.mark.parametrize("name", ["tiny_star", "tiny_arm", "tiny_distil"])
def test_fused_attention_matches_explicit_maps_eval(name):
    torch.manual_seed(0)
    model = build_student(name).eval()
    wavs, padding_mask = _padded_batch([8000, 6000, 3000])
    with torch.no_grad():
        fused = model(wavs, padding_mask)
        explicit = model(wavs, padding_mask, output_attentions=True)  # every layer builds its map
    assert len(fused.hidden_states) == len(explicit.hidden_states)
    for a, b in zip(fused.hidden_states, explicit.hidden_states):
        torch.testing.assert_close(a, b, atol=TOL, rtol=TOL)
    torch.testing.assert_close(fused.pre_transformer, explicit.pre_transformer, atol=0.0, rtol=0.0)


def test_fused_attention_fully_padded_row_stays_uniform():
    # A row whose keys are all padded gets uniform weights in both paths (finite fill, no NaN).
    torch.manual_seed(0)
    encoder = TransformerEncoder(16, 32, 2, [True, True], 0.0, 0.0, 0.0, 4, 2).eval()
    x = torch.randn(2, 7, 16)
    padding_mask = torch.zeros(2, 7, dtype=torch.bool)
    padding_mask[1] = True
    with torch.no_grad():
        fused = encoder(x, padding_mask)
        explicit = encoder(x, padding_mask, output_attentions=True)
    assert torch.isfinite(fused.hidden_states[-1]).all()
    torch.testing.assert_close(fused.hidden_states[-1], explicit.hidden_states[-1], atol=TOL, rtol=TOL)
    torch.testing.assert_close(explicit.attentions[0][1], torch.full((2, 7, 7), 1 / 7))


def test_fused_attention_gradients_match_in_training():
    torch.manual_seed(0)
    model = build_student("tiny_star", dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                          input_dropout=0.0).train()
    wavs, padding_mask = _padded_batch([8000, 5000], seed=1)
    grads = []
    for output_attentions in (False, True):
        model.zero_grad()
        out = model(wavs, padding_mask, output_attentions=output_attentions)
        sum(h.pow(2).mean() for h in out.hidden_states).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=TOL, rtol=1e-4, msg=name)


# ---------------------------------------------------------------- positional convolution


def test_positional_conv_cache_matches_weight_norm_and_tracks_updates():
    torch.manual_seed(0)
    pos = PositionalConv(16, 8, 4)
    x = torch.randn(2, 11, 16)
    reference = F.gelu(pos.conv(x.transpose(1, 2))[:, :, :-1]).transpose(1, 2)  # the former forward
    with torch.no_grad():
        first = pos(x)
        assert pos._cached_weight is not None
        cached = pos._cached_weight[1]
        second = pos(x)
        assert pos._cached_weight[1] is cached  # reused, not recomputed
    torch.testing.assert_close(first, reference, atol=0.0, rtol=0.0)
    torch.testing.assert_close(second, reference, atol=0.0, rtol=0.0)
    # An in-place update (optimizer step, load_state_dict) invalidates the cached kernel.
    with torch.no_grad():
        pos.conv.parametrizations.weight.original0.mul_(2.0)
        updated = pos(x)
    torch.testing.assert_close(updated, F.gelu(pos.conv(x.transpose(1, 2))[:, :, :-1]).transpose(1, 2))
    assert not torch.allclose(updated, first)


def test_positional_conv_training_backprops_through_weight_norm():
    torch.manual_seed(0)
    pos = PositionalConv(16, 8, 4)
    with torch.no_grad():
        pos(torch.randn(1, 5, 16))  # fills the cache; training must not use it
    pos(torch.randn(2, 9, 16)).sum().backward()
    g, v = pos.conv.parametrizations.weight.original0, pos.conv.parametrizations.weight.original1
    assert g.grad is not None and v.grad is not None
    assert g.grad.abs().sum() > 0 and v.grad.abs().sum() > 0


# ---------------------------------------------------------------- masked GroupNorm


def _reference_masked_group_norm(block: ConvBlock, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The masked GroupNorm as it was before issue 16 (multi-pass masked sums)."""
    norm = block.norm
    weight = valid.unsqueeze(1).to(x.dtype)
    count = weight.sum(dim=2, keepdim=True).clamp(min=1.0)
    mean = (x * weight).sum(dim=2, keepdim=True) / count
    var = ((x - mean).square() * weight).sum(dim=2, keepdim=True) / count
    x = (x - mean) * torch.rsqrt(var + norm.eps)
    return x * norm.weight.view(1, -1, 1) + norm.bias.view(1, -1, 1)


def test_masked_group_norm_matches_reference():
    torch.manual_seed(0)
    block = ConvBlock(1, 8, 10, 5, group_norm=True)
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 8, 50) * 3.0 + 1.5
    lengths = torch.tensor([50, 31, 1, 0])  # full, partial, one frame, no valid frame
    valid = torch.arange(50)[None] < lengths[:, None]
    torch.testing.assert_close(block._masked_group_norm(x, valid), _reference_masked_group_norm(block, x, valid),
                               atol=TOL, rtol=TOL)
    # with no padding it is the ordinary GroupNorm
    full = torch.ones(4, 50, dtype=torch.bool)
    torch.testing.assert_close(block._masked_group_norm(x, full), block.norm(x), atol=TOL, rtol=TOL)


# ---------------------------------------------------------------- STaR Gram batching


def _reference_gram_mse_sum(xs, ys, ts, us, padding_mask, normalize):
    """Per-layer loop of the former implementation: build both T x T Grams, masked MSE, sum."""
    total = 0.0
    for x, y, t, u in zip(xs, ys, ts, us):
        grams = []
        for left, right in ((x, y), (t, u)):
            left, right = left.double(), right.double()
            if padding_mask is not None:
                left = left.masked_fill(padding_mask[..., None], 0.0)
                right = right.masked_fill(padding_mask[..., None], 0.0)
            if normalize == "cosine":
                left, right = F.normalize(left, dim=-1), F.normalize(right, dim=-1)
            g = left @ right.transpose(1, 2)
            grams.append(g / left.shape[-1] if normalize == "dim" else g)
        valid = ~padding_mask if padding_mask is not None else torch.ones(x.shape[:2], dtype=torch.bool)
        pair = valid[:, :, None] & valid[:, None, :]
        total = total + ((grams[0] - grams[1]).pow(2) * pair).sum() / pair.sum()
    return total


@pytest.mark.parametrize("normalize", ["none", "dim", "cosine"])
@pytest.mark.parametrize("frames", [12, 300])  # 300 frames with widths 6 / 10 takes the d x d form
def test_fused_gram_losses_match_two_gram_reference(normalize, frames):
    generator = torch.Generator().manual_seed(frames)
    s = [torch.randn(2, frames, 6, generator=generator) for _ in range(4)]
    t = [torch.randn(2, frames, 10, generator=generator) for _ in range(4)]
    padding_mask = torch.zeros(2, frames, dtype=torch.bool)
    padding_mask[1, frames * 2 // 3:] = True
    lw = layerwise_tgm_loss(s[1:], t[1:], padding_mask, normalize)
    intra = intra_layer_tgm_loss(s, t, padding_mask, normalize)
    ref_lw = _reference_gram_mse_sum(s[1:], s[1:], t[1:], t[1:], padding_mask, normalize)
    ref_intra = _reference_gram_mse_sum(s[:-1], s[1:], t[:-1], t[1:], padding_mask, normalize)
    assert lw.dtype == torch.float32
    torch.testing.assert_close(lw.double(), ref_lw, atol=TOL, rtol=TOL)
    torch.testing.assert_close(intra.double(), ref_intra, atol=TOL, rtol=TOL)
    both = star_loss(s, t, padding_mask, normalize)
    torch.testing.assert_close(both["layerwise"], lw, atol=0.0, rtol=0.0)
    torch.testing.assert_close(both["intra"], intra, atol=0.0, rtol=0.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_star_loss_under_autocast_is_computed_in_fp32(dtype):
    # Activations of order 300 give Gram entries of ~1e5 * d: fp16 products would overflow.
    generator = torch.Generator().manual_seed(0)
    s = [(300 * torch.randn(2, 20, 16, generator=generator)).requires_grad_() for _ in range(3)]
    t = [300 * torch.randn(2, 20, 24, generator=generator) for _ in range(3)]
    reference = star_loss(s, t, normalize="none")["loss"]
    with torch.autocast("cpu", dtype=dtype):
        out = star_loss([x.to(dtype) for x in s], [x.to(dtype) for x in t], normalize="none")["loss"]
    assert out.dtype == torch.float32 and torch.isfinite(out)
    # only the input rounding to `dtype` separates the two
    torch.testing.assert_close(out, reference, rtol=0.05, atol=0.0)
    if dtype == torch.bfloat16:  # fp16 input gradients of this size overflow by themselves (grad-scaler territory)
        out.backward()
        assert all(torch.isfinite(x.grad).all() for x in s)


# ---------------------------------------------------------------- second round: in-place inference, per-row CNN,
# shared additive mask, map workspace, transposed P V product, hand-written Gram backward


def _reference_cnn(extractor: ConvFeatureExtractor, wavs: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """The CNN as plain batched convolutions, the masked GroupNorm of before and out-of-place GELU."""
    x = wavs.unsqueeze(1)
    for block in extractor.conv_layers:
        conv = block.conv
        x = F.conv1d(x, conv.weight, stride=conv.stride)
        if block.norm is not None:
            if padding_mask is None:
                x = block.norm(x)
            else:
                lengths = (~padding_mask).sum(dim=1)
                valid_len = torch.div(lengths - conv.kernel_size[0], conv.stride[0], rounding_mode="floor") + 1
                valid = torch.arange(x.shape[-1])[None] < valid_len[:, None]
                x = _reference_masked_group_norm(block, x, valid)
        x = F.gelu(x)
    return x


# the ARM/STaR CNN geometry (1x1 blocks included) at small widths
_SMALL_CNN = [(8, 10, 5), (16, 1, 1)] + [(16, 3, 2)] * 4 + [(12, 1, 1)] + [(12, 2, 2)] * 2


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("chunk", [1024, 5])  # one chunk; 80 chunks of the 1x1 -> (3, 2) pair, the last partial
def test_cnn_rows_inplace_and_1x1_products_match_plain_convolutions(monkeypatch, masked, chunk):
    monkeypatch.setattr(cnn_module, "STREAM_CHUNK", chunk)
    torch.manual_seed(0)
    extractor = ConvFeatureExtractor(_SMALL_CNN)
    with torch.no_grad():
        extractor.conv_layers[0].norm.weight.uniform_(0.5, 1.5)
        extractor.conv_layers[0].norm.bias.uniform_(-0.5, 0.5)
    wavs, padding_mask = _padded_batch([4000, 3100, 2000], seed=2)
    padding_mask = padding_mask if masked else None
    reference = _reference_cnn(extractor, wavs, padding_mask)
    with torch.no_grad():  # in-place GroupNorm and GELU, one row at a time
        fast = extractor(wavs, padding_mask)
    assert fast.shape == reference.shape == (3, 12, 12)
    torch.testing.assert_close(fast, reference.detach(), atol=TOL, rtol=TOL)
    # training path: same values and the same parameter gradients
    grads = []
    for out in (extractor(wavs, padding_mask), reference):
        extractor.zero_grad()
        out.pow(2).mean().backward(retain_graph=out is reference)
        grads.append([p.grad.clone() for p in extractor.parameters()])
    for fast_grad, ref_grad in zip(*grads):
        torch.testing.assert_close(fast_grad, ref_grad, atol=TOL, rtol=1e-4)


def _reference_encoder(encoder: TransformerEncoder, x: torch.Tensor, padding_mask: torch.Tensor | None):
    """Every layer's attention written out with masked_fill, softmax and ``P @ V`` (no grad scaling, no dropout)."""
    if padding_mask is not None:
        x = x.masked_fill(padding_mask[..., None], 0.0)
    pos = encoder.pos_conv
    x = encoder.layer_norm(x + F.gelu(pos.conv(x.transpose(1, 2))[:, :, :-1]).transpose(1, 2))
    hidden, maps, carried = [], [], None
    for layer in encoder.layers:
        attn = layer.self_attn

        def heads(t, attn=attn):
            return t.view(*t.shape[:2], attn.num_heads, attn.head_dim).transpose(1, 2)

        used = carried
        if attn.computes_attention or attn.release_compat:
            if attn.computes_attention:
                scores = (heads(attn.q_proj(x)) * attn.head_dim**-0.5) @ heads(attn.k_proj(x)).transpose(-1, -2)
            else:
                batch, num_heads, frames, _ = carried.shape
                scores = carried.transpose(0, 1).reshape(batch, num_heads, frames, frames)
            if padding_mask is not None:
                scores = scores.masked_fill(padding_mask[:, None, None, :], torch.finfo(x.dtype).min)
            used = scores.softmax(dim=-1)
            if attn.computes_attention:
                carried = used
        out = attn.out_proj((used @ heads(attn.v_proj(x))).transpose(1, 2).flatten(2))
        x = layer.self_attn_layer_norm(x + out)
        x = layer.final_layer_norm(x + layer.fc2(F.gelu(layer.fc1(x))))
        hidden.append(x)
        maps.append(used)
    return hidden, maps


_ARM_PATTERN = [True, False, True, False, True, True]  # reuse pairs, then a computing layer that may use SDPA


def _encoder(release_compat: bool) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(24, 40, 3, _ARM_PATTERN, 0.0, 0.0, 0.0, 4, 3, release_compat=release_compat)


@pytest.mark.parametrize("release_compat", [False, True])
@pytest.mark.parametrize("output_attentions", [False, True])
def test_attention_maps_inplace_and_workspace_match_reference(release_compat, output_attentions):
    encoder = _encoder(release_compat).eval()
    x = torch.randn(3, 9, 24, generator=torch.Generator().manual_seed(3))
    padding_mask = torch.arange(9)[None] >= torch.tensor([9, 6, 0])[:, None]  # full, partial, fully padded
    ref_hidden, ref_maps = _reference_encoder(encoder, x, padding_mask)
    with torch.no_grad():
        out = encoder(x, padding_mask, output_attentions=output_attentions)
    for got, want in zip(out.hidden_states, ref_hidden):
        torch.testing.assert_close(got, want, atol=TOL, rtol=TOL)
    if output_attentions:  # the workspace is not used then: every returned map is intact
        for got, want in zip(out.attentions, ref_maps):
            torch.testing.assert_close(got, want, atol=TOL, rtol=TOL)
    assert torch.isfinite(out.hidden_states[-1]).all()


@pytest.mark.parametrize("release_compat", [False, True])
def test_attention_training_gradients_match_reference(release_compat):
    # float64: the float32 gradients of this small random model differ by summation order alone (up to ~1 %
    # on a small, cancelling positional-conv bias gradient), which would hide a real difference
    encoder = _encoder(release_compat).train().double()
    x = torch.randn(2, 8, 24, generator=torch.Generator().manual_seed(4), dtype=torch.float64, requires_grad=True)
    padding_mask = torch.arange(8)[None] >= torch.tensor([8, 5])[:, None]
    grads = []
    for hidden in (encoder(x, padding_mask).hidden_states, _reference_encoder(encoder, x, padding_mask)[0]):
        encoder.zero_grad()
        x.grad = None
        sum(h.pow(2).mean() for h in hidden).backward()
        grads.append([x.grad.clone(), *(p.grad.clone() for p in encoder.parameters() if p.grad is not None)])
    assert len(grads[0]) == len(grads[1])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)


def test_all_false_padding_mask_equals_no_mask():
    encoder = _encoder(False).eval()
    x = torch.randn(2, 7, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        unmasked = encoder(x, None, output_attentions=True)
        all_valid = encoder(x, torch.zeros(2, 7, dtype=torch.bool), output_attentions=True)
    for a, b in zip(unmasked.hidden_states + unmasked.attentions, all_valid.hidden_states + all_valid.attentions):
        torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)


@pytest.mark.parametrize("normalize", ["none", "dim", "cosine"])
def test_gram_loss_gradients_match_two_gram_reference(normalize):
    generator = torch.Generator().manual_seed(6)
    s = [torch.randn(2, 12, 6, generator=generator, dtype=torch.float64).requires_grad_() for _ in range(4)]
    t = [torch.randn(2, 12, 10, generator=generator, dtype=torch.float64) for _ in range(4)]
    padding_mask = torch.zeros(2, 12, dtype=torch.bool)
    padding_mask[1, 8:] = True
    grads = []
    for loss in (star_loss(s, t, padding_mask, normalize, layerwise_weight=0.7)["loss"],
                 0.7 * _reference_gram_mse_sum(s[1:], s[1:], t[1:], t[1:], padding_mask, normalize)
                 + _reference_gram_mse_sum(s[:-1], s[1:], t[:-1], t[1:], padding_mask, normalize)):
        grads.append(torch.autograd.grad(loss, s))
    for got, want in zip(*grads):
        assert got.abs().sum() > 0
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)


def test_gram_loss_refuses_teacher_states_that_need_gradients():
    s = [torch.randn(1, 5, 4, requires_grad=True) for _ in range(3)]
    t = [torch.randn(1, 5, 6, requires_grad=True) for _ in range(3)]
    with pytest.raises(ValueError, match="teacher states require gradients"):
        star_loss(s, t)
    assert torch.isfinite(star_loss(s, [x.detach() for x in t])["loss"])


# ---------------------------------------------------------------- third round: Gram products per row on the valid
# frames (CPU), symmetric layer-wise Grams by blocks


def _gram_inputs(lengths, seed=7, frames=None, widths=(6, 10), layers=4):
    generator = torch.Generator().manual_seed(seed)
    frames = frames or max(lengths)
    s = [torch.randn(len(lengths), frames, widths[0], generator=generator, dtype=torch.float64).requires_grad_()
         for _ in range(layers)]
    t = [torch.randn(len(lengths), frames, widths[1], generator=generator, dtype=torch.float64) for _ in range(layers)]
    padding_mask = torch.arange(frames)[None] >= torch.tensor(lengths)[:, None]
    return s, t, padding_mask


def _loss_and_grads(s, t, padding_mask, normalize):
    out = star_loss(s, t, padding_mask, normalize, layerwise_weight=0.7)
    return out["layerwise"], out["intra"], torch.autograd.grad(out["loss"], s)


@pytest.mark.parametrize("normalize", ["none", "dim", "cosine"])
@pytest.mark.parametrize("blocks", [1, 2, 3])
def test_per_row_and_symmetric_gram_paths_match_the_batched_reference(monkeypatch, normalize, blocks):
    # rows: full, prefix, one frame, none; the third row also gets a hole (valid frames not a prefix)
    s, t, padding_mask = _gram_inputs([13, 9, 1, 0])
    padding_mask[0, 4] = True
    monkeypatch.setattr(star_module, "SYMMETRIC_BLOCKS", blocks)
    per_row = _loss_and_grads(s, t, padding_mask, normalize)
    monkeypatch.setattr(star_module, "PER_ROW_DEVICES", ())
    batched = _loss_and_grads(s, t, padding_mask, normalize)
    reference = (_reference_gram_mse_sum(s[1:], s[1:], t[1:], t[1:], padding_mask, normalize),
                 _reference_gram_mse_sum(s[:-1], s[1:], t[:-1], t[1:], padding_mask, normalize))
    for got in (per_row, batched):
        torch.testing.assert_close(got[0], reference[0], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(got[1], reference[1], atol=1e-10, rtol=1e-10)
    for a, b in zip(per_row[2], batched[2]):
        assert a[padding_mask].abs().max() == 0 and a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("normalize", ["dim", "cosine"])
def test_garbage_in_padded_frames_changes_nothing(normalize):
    s, t, padding_mask = _gram_inputs([11, 6])
    clean = _loss_and_grads(s, t, padding_mask, normalize)
    dirty_s = [x.detach().masked_fill(padding_mask[..., None], float("nan")).requires_grad_() for x in s]
    dirty_t = [x.masked_fill(padding_mask[..., None], float("inf")) for x in t]
    dirty = _loss_and_grads(dirty_s, dirty_t, padding_mask, normalize)
    for a, b in zip((clean[0], clean[1], *clean[2]), (dirty[0], dirty[1], *dirty[2])):
        torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)


def test_all_rows_padded_gives_zero_loss_with_a_graph():
    s, t, padding_mask = _gram_inputs([0, 0])
    layerwise, intra, grads = _loss_and_grads(s, t, padding_mask, "dim")
    assert layerwise.item() == 0.0 and intra.item() == 0.0 and layerwise.requires_grad
    assert all(g.abs().sum() == 0 for g in grads)


def test_gram_flops_follow_the_valid_frames_and_the_symmetric_blocks(monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    lengths, d_s, d_t, layers = [40, 30], 16, 24, 3  # widths large enough for the T x T form
    s, t, padding_mask = _gram_inputs(lengths, frames=40, widths=(d_s, d_t), layers=layers + 1)
    monkeypatch.setattr(star_module, "SYMMETRIC_BLOCKS", 2)
    with FlopCounterMode(display=False) as counter:
        star_loss(s, t, padding_mask)["loss"].backward()
    expected = 0
    for n in lengths:
        halves = (round(n / 2), n - round(n / 2))
        lower_pairs = halves[0] ** 2 + halves[1] * halves[0] + halves[1] ** 2  # blocks (1,1), (2,1), (2,2)
        layerwise = 2 * lower_pairs * (d_s + d_t) + 2 * n * n * d_s  # forward blocks + backward E A
        intra = 2 * n * n * (d_s + d_t) + 2 * 2 * n * n * d_s  # forward + backward E B and E^T A
        expected += layers * (layerwise + intra)
    assert counter.get_total_flops() == expected
