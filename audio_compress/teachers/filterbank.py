"""A filterbank front end for a HuBERT-shaped teacher: its convolutions set to a mel-spaced magnitude spectrum.

A HuBERT CNN learns band-pass filters on the raw wave over hundreds of GPU-hours. A mini teacher trained for
minutes on a CPU does not get there: its random 7-block CNN leaves the Transformer too little to work with
(a probe on it stays near chance on speaker identification). As in learnable-front-end work, where a
time-domain filterbank starts as Gabor filters, the ``mini_hubert_fb`` layout (:data:`FILTERBANK_LAYOUT`)
has three convolutions whose weights :func:`init_filterbank_frontend` sets so that they compute a short-time
magnitude spectrum at the HuBERT frame (25 ms window, 20 ms hop, so frame counts and alignment are those of
every other teacher):

* block 0, 2 channels of 1 tap: the wave and its negative. HuBERT's per-channel GroupNorm scales both to unit
  variance over the utterance (a loudness normalisation), and since ``GELU(x) - GELU(-x) = x`` exactly, the
  two rectified channels still hold the whole normalised wave;
* block 1, ``4 B`` channels of 400 taps at hop 320: for each of ``B`` bands with mel-spaced centres, the
  Hann-windowed cosine and sine at the centre frequency and their negatives (unit norm), applied to the
  difference of the two channels, i.e. to the normalised wave. GELU keeps the positive part of each, so a
  band's four channels carry ``|c|`` and ``|s|`` (up to GELU's soft knee);
* block 2, ``B`` channels of 1 tap: half the sum of each band's four channels, ``(|c| + |s|) / 2``: the
  band's magnitude within a factor of sqrt(2) whatever the phase of the signal in the window.

The GroupNorm normalises the wave, not the bands, so the bands keep their relative levels (the spectral
envelope that speaker identity lives in); a per-band normalisation would flatten it. Everything after
(LayerNorm, projection, positional convolution, Transformer) is the architecture's own.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from audio_compress.frames import HOP, RECEPTIVE_FIELD, SAMPLE_RATE

#: Window of block 0 in samples: HuBERT's receptive field (25 ms).
WINDOW = RECEPTIVE_FIELD
#: Bands of the mini teacher's front end.
BANDS = 64
#: transformers config fields of the filterbank layout with ``BANDS`` bands (receptive field 400, hop 320).
FILTERBANK_LAYOUT = {"conv_dim": (2, 4 * BANDS, BANDS), "conv_kernel": (1, WINDOW, 1), "conv_stride": (1, HOP, 1)}


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


def filterbank_weights(bands: int, window: int = WINDOW, fmin: float = 60.0, fmax: float = 7600.0
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Weights of the three blocks: ``(2, 1, 1)`` (the wave and its negative), ``(4 bands, 2, window)`` (per
    band: cos, -cos, sin, -sin, each of unit norm, on the first channel and negated on the second) and
    ``(bands, 4 bands, 1)`` (0.5 on the band's own four channels, 0 elsewhere)."""
    t = (torch.arange(window, dtype=torch.float64) - (window - 1) / 2) / SAMPLE_RATE
    hann = torch.hann_window(window, periodic=False, dtype=torch.float64)
    rows = []
    for f in band_centres(bands, fmin, fmax):
        cos = torch.cos(2 * math.pi * f * t) * hann
        sin = torch.sin(2 * math.pi * f * t) * hann
        cos, sin = cos / cos.norm(), sin / sin.norm()
        rows += [cos, -cos, sin, -sin]
    filters = torch.stack(rows)[:, None].float()
    pooling = torch.zeros(bands, 4 * bands, 1)
    for b in range(bands):
        pooling[b, 4 * b: 4 * b + 4] = 0.5
    return torch.tensor([1.0, -1.0])[:, None, None], torch.cat([filters, -filters], dim=1), pooling


def init_filterbank_frontend(model: nn.Module) -> None:
    """Set the feature encoder of a transformers HuBERT / wav2vec 2.0 / WavLM ``model`` with the filterbank
    layout (blocks of 2, ``4 B`` and ``B`` channels; 1, ``WINDOW`` and 1 taps; GroupNorm in block 0) to
    :func:`filterbank_weights`, and that GroupNorm to the identity affine map."""
    cfg = model.config
    bands = cfg.conv_dim[-1]
    layout = (tuple(cfg.conv_dim), tuple(cfg.conv_kernel), tuple(cfg.conv_stride))
    if layout != ((2, 4 * bands, bands), (1, WINDOW, 1), (1, HOP, 1)) or cfg.feat_extract_norm != "group":
        raise ValueError(f"a filterbank front end needs conv_dim (2, 4B, B), conv_kernel (1, {WINDOW}, 1), "
                         f"conv_stride (1, {HOP}, 1) and feat_extract_norm 'group' (e.g. the mini_hubert_fb "
                         f"architecture); got conv_dim {layout[0]}, conv_kernel {layout[1]}, conv_stride "
                         f"{layout[2]}, feat_extract_norm {cfg.feat_extract_norm!r}")
    blocks = model.feature_extractor.conv_layers
    with torch.no_grad():
        for block, weight in zip(blocks, filterbank_weights(bands)):
            block.conv.weight.copy_(weight)
        blocks[0].layer_norm.weight.fill_(1.0)
        blocks[0].layer_norm.bias.zero_()
