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
* block 1, ``4 B + 1`` channels of 400 taps at hop 320: for each of ``B`` bands with mel-spaced centres,
  the Hann-windowed cosine and sine at the centre frequency and their negatives (unit norm, times
  :data:`GAIN`), applied to the difference of the two wave channels, i.e. to the normalised wave; and the
  constant carried on. GELU keeps the positive part of each, so a band's four channels carry ``GAIN |c|``
  and ``GAIN |s|``. The gain puts GELU's soft knee (width about 1) below the quietest level the front end
  resolves: unamplified, the median band level of speech (about 0.1) would come out squared;
* block 2, ``L B`` channels of 1 tap: for each band, its magnitude ``m = (|c| + |s|) / 2`` (within a
  factor of sqrt(2) of the true one, whatever the phase) against ``L`` thresholds ``t_k = FLOOR 2^k``,
  i.e. ``GELU(S (m - t_k) / t_k)``: a hinge at ``t_k`` with a knee of relative width ``1/S``;
* block 3, ``B`` channels of 1 tap: per band, the sum of its hinges whose slopes make the piecewise-linear
  interpolation of ``log2(m / FLOOR)`` at the thresholds: 0 below :data:`FLOOR`, ``k`` at ``t_k``, and
  ``L - 1`` above the last threshold. That is the log compression of a log-mel spectrum, which the band
  levels need: they span four decades, and a Transformer trained for minutes does not learn to compress.

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
#: transformers config fields of the filterbank layout (receptive field 400, hop 320).
FILTERBANK_LAYOUT = {"conv_dim": (3, 4 * BANDS + 1, LEVELS * BANDS, BANDS), "conv_kernel": (1, WINDOW, 1, 1),
                     "conv_stride": (1, HOP, 1, 1)}

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
                       fmax: float = 7600.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Weights of the four blocks:

    * ``(3, 1, 1)``: the wave, its negative, and 0 (the constant channel comes from the GroupNorm's bias);
    * ``(4 bands + 1, 3, window)``: per band cos, -cos, sin, -sin (unit norm times :data:`GAIN`) on the first
      channel and negated on the second; last, the constant carried on (``1 / (window GELU(1))`` per tap);
    * ``(levels bands, 4 bands + 1, 1)``: per band and threshold ``t_k``, ``S / (2 GAIN t_k)`` on the band's
      four channels and ``-S / GELU(1)`` on the constant (band-major: row ``b levels + k``);
    * ``(bands, levels bands, 1)``: per band, the hinge slopes ``(s_k - s_{k-1}) t_k / S`` on its own rows,
      where ``s_k = 1 / (t_{k+1} - t_k)`` is the interpolation's slope above ``t_k`` (0 above the last).
    """
    t = (torch.arange(window, dtype=torch.float64) - (window - 1) / 2) / SAMPLE_RATE
    hann = torch.hann_window(window, periodic=False, dtype=torch.float64)
    rows = []
    for f in band_centres(bands, fmin, fmax):
        cos = torch.cos(2 * math.pi * f * t) * hann
        sin = torch.sin(2 * math.pi * f * t) * hann
        cos, sin = cos / cos.norm(), sin / sin.norm()
        rows += [cos, -cos, sin, -sin]
    analysis = GAIN * torch.stack(rows)
    filters = torch.zeros(4 * bands + 1, 3, window, dtype=torch.float64)
    filters[:-1, 0], filters[:-1, 1] = analysis, -analysis
    filters[-1, 2] = 1.0 / (window * _ONE)

    levels_at = torch.tensor(thresholds(levels), dtype=torch.float64)
    slopes = torch.zeros(levels, dtype=torch.float64)
    slopes[:-1] = 1.0 / (levels_at[1:] - levels_at[:-1])
    hinges = (slopes - torch.cat([slopes.new_zeros(1), slopes[:-1]])) * levels_at / SHARPNESS
    compare = torch.zeros(levels * bands, 4 * bands + 1, dtype=torch.float64)
    compress = torch.zeros(bands, levels * bands, dtype=torch.float64)
    for b in range(bands):
        rows_b = slice(b * levels, (b + 1) * levels)
        compare[rows_b, 4 * b: 4 * b + 4] = (SHARPNESS / (2 * GAIN * levels_at))[:, None]
        compress[b, rows_b] = hinges
    compare[:, -1] = -SHARPNESS / _ONE
    wave = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)[:, None, None]
    return tuple(w.float() for w in (wave, filters, compare[..., None], compress[..., None]))


def check_filterbank_layout(config) -> tuple[int, int]:
    """The ``(bands, levels)`` of a transformers HuBERT / wav2vec 2.0 / WavLM ``config`` with the filterbank
    layout (blocks of 3, ``4 B + 1``, ``L B`` and ``B`` channels; 1, ``WINDOW``, 1 and 1 taps; GroupNorm in
    block 0; no conv bias). Raises ValueError naming what differs (a recipe's preflight calls it)."""
    bands = config.conv_dim[-1]
    levels = config.conv_dim[2] // bands if len(config.conv_dim) == 4 else 0
    layout = (tuple(config.conv_dim), tuple(config.conv_kernel), tuple(config.conv_stride))
    expected = ((3, 4 * bands + 1, levels * bands, bands), (1, WINDOW, 1, 1), (1, HOP, 1, 1))
    if levels < 2 or layout != expected or config.feat_extract_norm != "group" or config.conv_bias:
        raise ValueError(f"a filterbank front end needs conv_dim (3, 4B+1, LB, B) with L >= 2, conv_kernel "
                         f"(1, {WINDOW}, 1, 1), conv_stride (1, {HOP}, 1, 1), feat_extract_norm 'group' and no "
                         f"conv bias (e.g. the mini_hubert_fb architecture); got conv_dim {layout[0]}, conv_kernel "
                         f"{layout[1]}, conv_stride {layout[2]}, feat_extract_norm {config.feat_extract_norm!r}, "
                         f"conv_bias {config.conv_bias}")
    return bands, levels


def init_filterbank_frontend(model: nn.Module) -> None:
    """Set the feature encoder of a transformers HuBERT / wav2vec 2.0 / WavLM ``model`` with the filterbank
    layout (:func:`check_filterbank_layout`) to :func:`filterbank_weights`, and block 0's GroupNorm to the
    identity on the wave channels and the constant 1 on the third."""
    bands, levels = check_filterbank_layout(model.config)
    blocks = model.feature_extractor.conv_layers
    with torch.no_grad():
        for block, weight in zip(blocks, filterbank_weights(bands, levels)):
            block.conv.weight.copy_(weight)
        blocks[0].layer_norm.weight.copy_(torch.tensor([1.0, 1.0, 0.0]))
        blocks[0].layer_norm.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
