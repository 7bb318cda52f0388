"""Frame arithmetic of the wav2vec 2.0 / HuBERT convolutional feature encoder."""

from __future__ import annotations

import torch

#: Receptive field of the 7-layer CNN in samples (25 ms at 16 kHz).
RECEPTIVE_FIELD = 400
#: Hop between frames in samples (20 ms at 16 kHz); s3prl's downsample rate.
HOP = 320
SAMPLE_RATE = 16000


def num_frames(num_samples: int) -> int:
    """Frames the CNN produces for ``num_samples`` samples: ``floor((L - 400) / 320) + 1``.

    Returns 0 for inputs shorter than the 400-sample receptive field.
    """
    if num_samples < RECEPTIVE_FIELD:
        return 0
    return (num_samples - RECEPTIVE_FIELD) // HOP + 1


def frame_padding_mask(sample_padding_mask: torch.Tensor, total_frames: int) -> torch.Tensor:
    """Frame-level padding mask (True = padded) from a sample-level one.

    A frame is valid when it lies entirely inside the unpadded part of its row,
    i.e. its index is below ``num_frames(valid_samples)``.
    """
    lengths = (~sample_padding_mask).sum(dim=1)
    valid = torch.clamp(torch.div(lengths - RECEPTIVE_FIELD, HOP, rounding_mode="floor") + 1, min=0)
    idx = torch.arange(total_frames, device=sample_padding_mask.device)
    return idx.unsqueeze(0) >= valid.unsqueeze(1)
