"""A positional convolution that starts as the deltas of the front end's channels.

Speech front ends since the Kaldi era append delta features, a regression of each channel over a few
neighbouring frames (``d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)``, ``n = 1..N``): the probes of the
mini benchmark gain about 20 points of KS and IC from them on the teacher's own filterbank (KS 67.7 -> 90.6,
IC 64.6 -> 82.3; README, "Mini speech benchmark"). A HuBERT front end cannot append them without changing
its frame count (every convolution of the feature encoder is unpadded, so any temporal context widens the
receptive field and drops frames), but the encoder's positional convolution is padded to the same length
and sees ``num_conv_pos_embeddings`` frames. :func:`init_delta_context` sets the feature projection and
that convolution so that the Transformer's input starts as each front-end channel beside its delta;
pretraining then trains both like any other weight.

Layout, per group ``g`` of the grouped convolution (``C = hidden / groups`` channels, ``F' = F / groups`` of
the ``F`` front-end channels): projection rows ``g C + i`` copy front-end channel ``g F' + i``; convolution
rows ``g C + F' + i`` compute its delta plus :data:`DELTA_OFFSET` (the convolution is followed by a GELU,
which is within 0.4 % of the identity above 2: the offset keeps the deltas on its linear side). Every other
weight of the two starts at 0 apart from a little noise in the convolution, whose weight normalisation
divides by each tap's norm (a tap of zeros would divide by zero).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from compact_ssl.nn import set_effective_weight

#: Frames on each side of the delta regression (Kaldi's ``add-deltas`` default).
DELTA_WINDOW = 2
#: Bias of the delta channels of the positional convolution (see the module docstring).
DELTA_OFFSET = 3.0
#: Standard deviation of the noise on the positional convolution's other weights.
NOISE = 1e-3


def delta_taps(window: int = DELTA_WINDOW) -> Tensor:
    """The regression's taps at offsets ``-window..window``: ``n / (2 sum_{m<=window} m^2)``."""
    offsets = torch.arange(-window, window + 1, dtype=torch.float32)
    return offsets / (2.0 * float((offsets[window + 1:] ** 2).sum()))


def check_delta_layout(config) -> tuple[int, int]:
    """``(front-end channels, groups)`` of a transformers HuBERT / wav2vec 2.0 / WavLM ``config`` whose
    positional convolution can hold the delta of every front-end channel: the channels split evenly over
    the groups, each group is at least twice as wide as its share of them, and the kernel spans
    ``2 DELTA_WINDOW + 1`` frames. Raises ValueError naming what does not fit."""
    channels, groups = config.conv_dim[-1], config.num_conv_pos_embedding_groups
    width, kernel = config.hidden_size // groups, config.num_conv_pos_embeddings
    problems = []
    if channels % groups:
        problems.append(f"the {channels} front-end channels do not split over {groups} groups")
    elif width < 2 * (channels // groups):
        problems.append(f"hidden_size {config.hidden_size} is below twice the {channels} front-end channels")
    if kernel // 2 < DELTA_WINDOW or (kernel - 1) // 2 < DELTA_WINDOW:
        problems.append(f"num_conv_pos_embeddings {kernel} spans fewer than {2 * DELTA_WINDOW + 1} frames")
    if problems:
        raise ValueError("positional_init 'deltas' needs a positional convolution that can hold the delta of "
                         "every front-end channel: " + "; ".join(problems)
                         + " (e.g. mini_hubert_fb at hidden_size 128: 64 bands, 4 groups of 32)")
    return channels, groups


def init_delta_context(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Set the feature projection and positional convolution of a transformers HuBERT / wav2vec 2.0 / WavLM
    ``model`` (:func:`check_delta_layout`) so that the encoder's input starts as each front-end channel
    beside its delta (layout in the module docstring)."""
    channels, groups = check_delta_layout(model.config)
    hidden, kernel = model.config.hidden_size, model.config.num_conv_pos_embeddings
    width, share = hidden // groups, channels // groups
    projection = model.feature_projection.projection
    conv = model.encoder.pos_conv_embed.conv
    # output t of the convolution reads frames t - kernel // 2 + k (the same-pad layer drops the extra frame)
    centre, taps = kernel // 2, delta_taps()
    local = torch.arange(share).repeat(groups)  # a channel's index within its group's share
    static = torch.arange(groups).repeat_interleave(share) * width + local  # hidden row of each front-end channel
    delta = static + share  # hidden row of its delta
    weight = NOISE * torch.randn(hidden, width, kernel, generator=generator)
    weight[delta, local] = 0.0
    weight[delta, local, centre - DELTA_WINDOW: centre + DELTA_WINDOW + 1] = taps
    bias = torch.zeros(hidden)
    bias[delta] = DELTA_OFFSET
    project = torch.zeros(hidden, channels)
    project[static, torch.arange(channels)] = 1.0
    with torch.no_grad():
        projection.weight.copy_(project)
        projection.bias.zero_()
        conv.bias.copy_(bias)
        set_effective_weight(conv, weight)  # weight-normed: g and v such that g v / |v| is ``weight``
