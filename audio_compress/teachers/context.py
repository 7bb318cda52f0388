"""A positional convolution that starts as the deltas of the front end's channels.

Speech front ends since the Kaldi era append delta features, a regression of each channel over a few
neighbouring frames (``d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)``, ``n = 1..N``): the probes of the
mini benchmark gain about 20 points of KS and IC from them on the teacher's own filterbank (KS 67.7 -> 90.6,
IC 64.6 -> 82.3; README, "Mini speech benchmark"). A HuBERT front end cannot append them without changing
its frame count (every convolution of the feature encoder is unpadded, so any temporal context widens the
receptive field and drops frames), but the encoder's positional convolution is padded to the same length
and sees ``num_conv_pos_embeddings`` frames. :func:`init_delta_context` sets the feature projection and
that convolution so that the Transformer's input starts as each front-end channel beside its delta (and,
at ``order`` 2, its delta-delta, the regression applied twice: Kaldi's second-order features, with which
the probes of the mel front end gain another 5 points of IC); pretraining then trains both like any other
weight.

Layout, per group ``g`` of the grouped convolution (``C = hidden / groups`` channels, ``F' = F / groups`` of
the ``F`` front-end channels): projection rows ``g C + i`` copy front-end channel ``g F' + i``; convolution
rows ``g C + F' + i`` compute its delta plus :data:`DELTA_OFFSET` (at order 2, rows ``g C + 2 F' + i`` its
delta-delta plus the same offset; the convolution is followed by a GELU,
which is within 0.4 % of the identity above 2: the offset keeps the deltas on its linear side). Every other
weight of the two starts at 0 apart from a little noise in the convolution, whose weight normalisation
divides by each tap's norm (a tap of zeros would divide by zero).

``paired`` (``positional_init: paired_deltas``) lays every signal out twice, as itself and its negative:
rows ``g C + 2 k F' + i`` hold signal ``k`` of channel ``i`` (0 the channel, 1 its delta, 2 its delta-delta)
and rows ``g C + (2 k + 1) F' + i`` its negative (the deltas' negatives with the same offset). Why: a
post-LN encoder normalises every hidden state over the frame, and removing a frame's mean removes its
overall level, which keyword and intent probes of the mini benchmark lean on (measured on the teacher's own
input: KS 93.1 -> 75.7, IC 86.5 -> 63.2 once LayerNormed). A pair ``(x, -x)`` adds nothing to the frame's
mean, so the level survives as the frame's scale relative to the constant offsets (README, "Mini speech
benchmark"). It needs twice the unpaired layout's width: four times the bands at order 1 (32 bands at
width 128).
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


def delta_filters(order: int, window: int = DELTA_WINDOW) -> list[Tensor]:
    """The taps of the deltas up to ``order``, centred: the regression (``2 window + 1`` taps), then that
    convolved with itself for the delta-delta (``4 window + 1`` taps), and so on."""
    filters, taps = [], torch.ones(1)
    for _ in range(order):
        taps = torch.nn.functional.conv1d(taps.view(1, 1, -1), delta_taps(window).flip(0).view(1, 1, -1),
                                          padding=2 * window).view(-1)
        filters.append(taps)
    return filters


def check_delta_layout(config, order: int = 1, paired: bool = False) -> tuple[int, int]:
    """``(front-end channels, groups)`` of a transformers HuBERT / wav2vec 2.0 / WavLM ``config`` whose
    positional convolution can hold the deltas up to ``order`` of every front-end channel (with ``paired``,
    each signal beside its negative): the channels split evenly over the groups, each group is at least
    ``order + 1`` times (``paired``: ``2 (order + 1)`` times) as wide as its share of them, and the kernel
    spans ``2 order DELTA_WINDOW + 1`` frames. Raises ValueError naming what does not fit."""
    if order not in (1, 2):
        raise ValueError(f"delta_order must be 1 (deltas) or 2 (deltas and delta-deltas), got {order}")
    channels, groups = config.conv_dim[-1], config.num_conv_pos_embedding_groups
    width, kernel = config.hidden_size // groups, config.num_conv_pos_embeddings
    reach, copies = order * DELTA_WINDOW, (order + 1) * (2 if paired else 1)
    problems = []
    if channels % groups:
        problems.append(f"the {channels} front-end channels do not split over {groups} groups")
    elif width < copies * (channels // groups):
        problems.append(f"hidden_size {config.hidden_size} is below {copies} times the {channels} front-end "
                        "channels")
    if kernel // 2 < reach or (kernel - 1) // 2 < reach:
        problems.append(f"num_conv_pos_embeddings {kernel} spans fewer than {2 * reach + 1} frames")
    if problems:
        name, example = (("paired_deltas", "32 bands at order 1, 20 at order 2") if paired
                         else ("deltas", "64 bands at order 1, 40 at order 2"))
        raise ValueError(f"positional_init {name!r} at delta_order {order} needs a positional convolution that "
                         "can hold them for every front-end channel: " + "; ".join(problems)
                         + f" (e.g. mini_hubert_fb at hidden_size 128: {example}; the front-end channels are "
                         "conv_dim's last entry, the bands)")
    return channels, groups


def init_delta_context(model: nn.Module, generator: torch.Generator | None = None, order: int = 1,
                       paired: bool = False) -> None:
    """Set the feature projection and positional convolution of a transformers HuBERT / wav2vec 2.0 / WavLM
    ``model`` (:func:`check_delta_layout`) so that the encoder's input starts as each front-end channel
    beside its deltas up to ``order``, with ``paired`` each of them beside its negative too (layout in the
    module docstring)."""
    channels, groups = check_delta_layout(model.config, order, paired)
    hidden, kernel = model.config.hidden_size, model.config.num_conv_pos_embeddings
    width, share = hidden // groups, channels // groups
    signs = (1.0, -1.0) if paired else (1.0,)
    projection = model.feature_projection.projection
    conv = model.encoder.pos_conv_embed.conv
    # output t of the convolution reads frames t - kernel // 2 + k (the same-pad layer drops the extra frame)
    centre = kernel // 2
    local = torch.arange(share).repeat(groups)  # a channel's index within its group's share
    first = torch.arange(groups).repeat_interleave(share) * width + local  # hidden row of each front-end channel
    weight = NOISE * torch.randn(hidden, width, kernel, generator=generator)
    bias = torch.zeros(hidden)
    project = torch.zeros(hidden, channels)
    for j, sign in enumerate(signs):
        project[first + j * share, torch.arange(channels)] = sign
        for k, taps in enumerate(delta_filters(order), start=1):
            rows, reach = first + (k * len(signs) + j) * share, len(taps) // 2  # hidden rows of the k-th deltas
            weight[rows, local] = 0.0
            weight[rows, local, centre - reach: centre + reach + 1] = sign * taps
            bias[rows] = DELTA_OFFSET
    with torch.no_grad():
        projection.weight.copy_(project)
        projection.bias.zero_()
        conv.bias.copy_(bias)
        set_effective_weight(conv, weight)  # weight-normed: g and v such that g v / |v| is ``weight``
