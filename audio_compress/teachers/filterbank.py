"""A filterbank front end for a HuBERT-shaped teacher: its convolutions set to a log-compressed mel spectrum.

A HuBERT CNN learns band-pass filters on the raw wave over hundreds of GPU-hours. A mini teacher trained for
minutes on a CPU does not get there: its random 7-block CNN leaves the Transformer too little to work with
(a probe on it stays near chance on speaker identification). As in learnable-front-end work, where a
time-domain filterbank starts as Gabor filters, the ``mini_hubert_fb`` layout (:data:`FILTERBANK_LAYOUT`)
has four convolutions whose weights :func:`init_filterbank_frontend` sets so that they compute a
log-compressed short-time magnitude spectrum at the HuBERT frame (25 ms window, 20 ms hop, so frame counts
and alignment are those of every other teacher). HuBERT's CNN has no biases; a constant channel, made by
block 0's GroupNorm, stands in for them.

* block 0, 3 channels of 1 tap: the wave, its negative, and a constant. HuBERT's per-channel GroupNorm
  scales the first two to unit variance over the utterance (a loudness normalisation), and since
  ``GELU(x) - GELU(-x) = x`` exactly, the two rectified channels still hold the whole normalised wave. The
  third channel has zero weights, and its GroupNorm's affine map (weight 0, bias 1) makes it 1 everywhere;
* block 1, ``4 A + 1`` channels of 400 taps at hop 320: for each of ``A`` analysis frequencies, the
  Hann-windowed cosine and sine and their negatives (unit norm, times :data:`GAIN`), applied to the
  difference of the two wave channels, i.e. to the normalised wave; and the constant carried on. GELU keeps
  the positive part of each, so a frequency's four channels carry ``GAIN |c|`` and ``GAIN |s|``. The gain
  puts GELU's soft knee (width about 1) below the quietest level the front end resolves: unamplified, the
  median band level of speech (about 0.1) would come out squared;
* block 2, ``L B`` channels of 1 tap: for each of ``B`` bands with mel-spaced centres, its magnitude ``m``
  from the magnitudes ``(|c| + |s|) / 2`` (each within a factor of sqrt(2) of the true one, whatever the
  phase), against ``L`` thresholds ``t_k = FLOOR 2^k``, i.e. ``GELU(S (m - t_k) / t_k)``: a hinge at
  ``t_k`` with a knee of relative width ``1/S``;
* block 3, ``B`` channels of 1 tap: per band, the sum of its hinges whose slopes make the piecewise-linear
  interpolation of ``log2(m / FLOOR)`` at the thresholds: 0 below :data:`FLOOR`, ``k`` at ``t_k``, and
  ``L - 1`` above the last threshold. That is the log compression of a log-mel spectrum, which the band
  levels need: they span four decades, and a Transformer trained for minutes does not learn to compress.

Two ways to make the bands (``bins`` of :func:`filterbank_weights`, ``mel`` of :func:`init_filterbank_frontend`):

* centre filters (``mini_hubert_fb``, :data:`FILTERBANK_LAYOUT`): one analysis frequency per band, at its
  centre (``A = B``), and ``m`` is that filter's magnitude. A 25 ms window's filter is about 80 Hz wide, so
  a high band (hundreds of Hz between centres) is read in a narrow slice and the spectrum between centres
  is not read at all;
* mel triangles (:func:`filterbank_layout` with ``bins``; ``frontend: mel_filterbank`` in pretraining):
  the analysis frequencies are a DFT grid (:func:`analysis_frequencies`; 199 is every bin of a 400-point
  DFT but DC and Nyquist, 40 Hz apart), and ``m`` is the mean of the band's bin magnitudes under its mel
  triangle (:func:`mel_weights`), as a mel filterbank integrates a band. It covers the whole spectrum and
  lowers the variance of each level; probed on the mini benchmark's data with deltas computed outside the
  model it gains on every task (README, "Mini speech benchmark"), at three times block 1's channels.

The GroupNorm normalises the wave, not the bands, so the bands keep their relative levels (the spectral
envelope that speaker identity lives in); a per-band normalisation would flatten it. Everything after
(LayerNorm, projection, positional convolution, Transformer) is the architecture's own.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audio_compress.frames import HOP, RECEPTIVE_FIELD, SAMPLE_RATE

#: Window of block 1 in samples: HuBERT's receptive field (25 ms).
WINDOW = RECEPTIVE_FIELD
#: Bands of the mini teacher's front end.
BANDS = 64
#: Thresholds per band (octaves of level resolved above :data:`FLOOR`, plus one).
LEVELS = 15
#: The lowest band magnitude resolved, for a unit-variance wave and unit-norm filters (about the 1 %
#: quantile of band levels on the mini corpus; the top threshold, ``FLOOR 2^(LEVELS-1)`` = 16.4, is above
#: its 99.9 %).
FLOOR = 1e-3
#: Gain of block 1: GELU(x) is within 0.004 of max(x, 0) for |x| >= 4, so levels down to 4 / GAIN = FLOOR
#: are rectified as by a ReLU.
GAIN = 4.0 / FLOOR
#: Knee sharpness of the hinges: each bends over about ``1/SHARPNESS`` of its threshold.
SHARPNESS = 8.0
#: Analysis frequencies of the mel-triangle bands: the bins of a :data:`WINDOW`-point DFT but DC and Nyquist.
MEL_BINS = WINDOW // 2 - 1

_ONE = float(F.gelu(torch.tensor(1.0)))  # the constant channel's value after each block's GELU


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: float) -> float:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def band_centres(bands: int, fmin: float = 60.0, fmax: float = 7600.0) -> list[float]:
    """``bands`` centre frequencies (Hz), equally spaced on the mel scale from ``fmin`` to ``fmax`` inclusive."""
    if bands < 2 or not 0 < fmin < fmax < SAMPLE_RATE / 2:
        raise ValueError(f"need bands >= 2 and 0 < fmin < fmax < {SAMPLE_RATE / 2:g}, got {bands}, {fmin}, {fmax}")
    lo, hi = _hz_to_mel(fmin), _hz_to_mel(fmax)
    return [_mel_to_hz(lo + (hi - lo) * i / (bands - 1)) for i in range(bands)]


def filterbank_layout(bands: int = BANDS, bins: int | None = None, levels: int = LEVELS) -> dict:
    """transformers config fields of a filterbank front end (receptive field 400, hop 320): ``bands`` centre
    filters, or with ``bins`` analysis frequencies, ``bands`` mel triangles over them."""
    analysis = bands if bins is None else bins
    return {"conv_dim": (3, 4 * analysis + 1, levels * bands, bands), "conv_kernel": (1, WINDOW, 1, 1),
            "conv_stride": (1, HOP, 1, 1)}


#: The ``mini_hubert_fb`` layout: 64 centre filters.
FILTERBANK_LAYOUT = filterbank_layout()


def analysis_frequencies(bins: int = MEL_BINS) -> list[float]:
    """The ``bins`` frequencies (Hz) of the mel-triangle bands: ``k fs / (2 (bins + 1))`` for ``k = 1..bins``,
    a DFT grid without DC and Nyquist (for :data:`MEL_BINS`, the bins of a :data:`WINDOW`-point DFT)."""
    if bins < 1:
        raise ValueError(f"need at least one analysis frequency, got {bins}")
    return [k * SAMPLE_RATE / (2.0 * (bins + 1)) for k in range(1, bins + 1)]


def mel_weights(bands: int, bins: int = MEL_BINS, fmin: float = 60.0, fmax: float = 7600.0) -> Tensor:
    """``(bands, bins)``, float64: each band's mel triangle over :func:`analysis_frequencies`, rising from the
    previous band's centre (:func:`band_centres`, extended by one mel step at both ends) to its own and
    falling to the next one's, normalised to sum to 1 (a band narrower than the grid takes its nearest bin
    alone)."""
    lo, hi = _hz_to_mel(fmin), _hz_to_mel(fmax)
    step = (hi - lo) / (bands - 1)
    edges = torch.tensor([_mel_to_hz(lo + step * i) for i in range(-1, bands + 1)], dtype=torch.float64)
    freqs = torch.tensor(analysis_frequencies(bins), dtype=torch.float64)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    weights = torch.minimum((freqs - left) / (centre - left), (right - freqs) / (right - centre)).clamp(min=0.0)
    empty = weights.sum(1) == 0
    weights[empty, (freqs[None] - centre[empty]).abs().argmin(1)] = 1.0
    return weights / weights.sum(1, keepdim=True)


def thresholds(levels: int = LEVELS) -> list[float]:
    """The hinge thresholds of block 2: ``FLOOR * 2**k`` for ``k < levels``."""
    return [FLOOR * 2.0 ** k for k in range(levels)]


def log_level(magnitude: Tensor, levels: int = LEVELS) -> Tensor:
    """What block 3 approximates: the piecewise-linear interpolation of ``log2(magnitude / FLOOR)`` at
    :func:`thresholds`, clamped to ``[0, levels - 1]``."""
    scaled = (magnitude / FLOOR).clamp(1.0, 2.0 ** (levels - 1))
    octave = scaled.log2().floor().clamp(max=levels - 2)
    return octave + scaled / 2.0 ** octave - 1.0


def filterbank_weights(bands: int, levels: int = LEVELS, window: int = WINDOW, fmin: float = 60.0,
                       fmax: float = 7600.0, bins: int | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Weights of the four blocks, for ``bands`` centre filters or, with ``bins``, ``bands`` mel triangles
    over ``bins`` analysis frequencies (module docstring); ``A`` analysis frequencies (``bands`` or ``bins``):

    * ``(3, 1, 1)``: the wave, its negative, and 0 (the constant channel comes from the GroupNorm's bias);
    * ``(4 A + 1, 3, window)``: per analysis frequency cos, -cos, sin, -sin (unit norm times :data:`GAIN`) on
      the first channel and negated on the second; last, the constant carried on (``1 / (window GELU(1))``
      per tap);
    * ``(levels bands, 4 A + 1, 1)``: per band and threshold ``t_k``, ``w S / (2 GAIN t_k)`` on the four
      channels of each analysis frequency, ``w`` its weight in the band (1 on the band's own centre filter,
      or its :func:`mel_weights`), and ``-S / GELU(1)`` on the constant (band-major: row ``b levels + k``);
    * ``(bands, levels bands, 1)``: per band, the hinge slopes ``(s_k - s_{k-1}) t_k / S`` on its own rows,
      where ``s_k = 1 / (t_{k+1} - t_k)`` is the interpolation's slope above ``t_k`` (0 above the last).
    """
    if bins is None:
        freqs, band_of = band_centres(bands, fmin, fmax), torch.eye(bands, dtype=torch.float64)
    else:
        freqs, band_of = analysis_frequencies(bins), mel_weights(bands, bins, fmin, fmax)
    analysis = len(freqs)
    t = (torch.arange(window, dtype=torch.float64) - (window - 1) / 2) / SAMPLE_RATE
    hann = torch.hann_window(window, periodic=False, dtype=torch.float64)
    phase = 2 * math.pi * torch.tensor(freqs, dtype=torch.float64)[:, None] * t
    cos, sin = torch.cos(phase) * hann, torch.sin(phase) * hann
    cos, sin = cos / cos.norm(dim=1, keepdim=True), sin / sin.norm(dim=1, keepdim=True)
    filters = torch.zeros(4 * analysis + 1, 3, window, dtype=torch.float64)
    filters[:-1, 0] = GAIN * torch.stack([cos, -cos, sin, -sin], 1).reshape(4 * analysis, window)
    filters[:-1, 1] = -filters[:-1, 0]
    filters[-1, 2] = 1.0 / (window * _ONE)

    levels_at = torch.tensor(thresholds(levels), dtype=torch.float64)
    slopes = torch.zeros(levels, dtype=torch.float64)
    slopes[:-1] = 1.0 / (levels_at[1:] - levels_at[:-1])
    hinges = (slopes - torch.cat([slopes.new_zeros(1), slopes[:-1]])) * levels_at / SHARPNESS
    compare = torch.zeros(levels * bands, 4 * analysis + 1, dtype=torch.float64)
    per_channel = band_of.repeat_interleave(4, dim=1)  # (bands, 4 A): a band's weight on each channel
    compare[:, :-1] = (per_channel[:, None] * (SHARPNESS / (2 * GAIN * levels_at))[:, None]).reshape(
        levels * bands, 4 * analysis)
    compare[:, -1] = -SHARPNESS / _ONE
    compress = torch.block_diag(*[hinges[None]] * bands)
    wave = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)[:, None, None]
    return tuple(w.float() for w in (wave, filters, compare[..., None], compress[..., None]))


def check_filterbank_layout(config, mel: bool = False) -> tuple[int, int, int]:
    """The ``(bands, levels, analysis frequencies)`` of a transformers HuBERT / wav2vec 2.0 / WavLM ``config``
    with a filterbank layout (:func:`filterbank_layout`: blocks of 3, ``4 A + 1``, ``L B`` and ``B`` channels,
    ``A = B`` for centre filters, any ``A`` for ``mel`` triangles; 1, ``WINDOW``, 1 and 1 taps; GroupNorm in
    block 0; no conv bias). Raises ValueError naming what differs (a recipe's preflight calls it)."""
    dims = tuple(config.conv_dim)
    bands = dims[-1]
    levels = dims[2] // bands if len(dims) == 4 else 0
    analysis = (dims[1] - 1) // 4 if len(dims) == 4 and mel else bands
    expected = filterbank_layout(bands, analysis if mel else None, levels)
    found = {"conv_dim": dims, "conv_kernel": tuple(config.conv_kernel), "conv_stride": tuple(config.conv_stride)}
    if (levels < 2 or bands < 2 or analysis < 1 or found != expected
            or config.feat_extract_norm != "group" or config.conv_bias):
        kind, shape, example = (("mel filterbank", "(3, 4A+1, LB, B) with A >= 1, L >= 2, B >= 2 (A analysis "
                                 "frequencies, L levels, B bands)", ", conv_dim (3, 797, 960, 64)") if mel else
                                ("filterbank", "(3, 4B+1, LB, B) with L >= 2, B >= 2 (L levels, B bands)", ""))
        raise ValueError(f"a {kind} front end needs conv_dim {shape}, conv_kernel (1, {WINDOW}, 1, 1), "
                         f"conv_stride (1, {HOP}, 1, 1), "
                         f"feat_extract_norm 'group' and no conv bias (e.g. the mini_hubert_fb architecture{example}); "
                         f"got conv_dim {dims}, conv_kernel {found['conv_kernel']}, conv_stride "
                         f"{found['conv_stride']}, feat_extract_norm {config.feat_extract_norm!r}, "
                         f"conv_bias {config.conv_bias}")
    return bands, levels, analysis


def init_filterbank_frontend(model: nn.Module, mel: bool = False) -> None:
    """Set the feature encoder of a transformers HuBERT / wav2vec 2.0 / WavLM ``model`` with a filterbank
    layout (:func:`check_filterbank_layout`; ``mel``: mel triangles over a DFT grid rather than centre
    filters) to :func:`filterbank_weights`, and block 0's GroupNorm to the identity on the wave channels and
    the constant 1 on the third."""
    bands, levels, analysis = check_filterbank_layout(model.config, mel)
    blocks = model.feature_extractor.conv_layers
    with torch.no_grad():
        for block, weight in zip(blocks, filterbank_weights(bands, levels, bins=analysis if mel else None)):
            block.conv.weight.copy_(weight)
        blocks[0].layer_norm.weight.copy_(torch.tensor([1.0, 1.0, 0.0]))
        blocks[0].layer_norm.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
