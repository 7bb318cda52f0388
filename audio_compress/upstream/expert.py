"""The s3prl upstream contract for our models: list of waveforms in, dict of hidden states out."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from audio_compress.data.dataset import pad_waveforms
from audio_compress.frames import HOP, RECEPTIVE_FIELD

#: Maps (model, padded wavs (B, L), padding mask (B, L), True = padded) to hidden states (B, T, D).
HiddenStatesFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], list[torch.Tensor]]


class UpstreamExpert(nn.Module):
    """s3prl upstream around any of our speech models.

    ``forward`` takes a list of unpadded 1-D 16 kHz waveforms (already on the model's device) and
    returns ``{"hidden_states": [...], "last_hidden_state": ...}``, every state ``(B, T, D)`` with
    ``T = floor((L - 400) / 320) + 1`` for the longest input. Inputs shorter than the 400-sample
    receptive field are zero-padded to it so that they still give one frame.
    """

    def __init__(self, model: nn.Module, hidden_states_fn: HiddenStatesFn, downsample_rate: int = HOP):
        super().__init__()
        self.model = model
        self.hidden_states_fn = hidden_states_fn
        self.downsample_rate = downsample_rate

    def get_downsample_rates(self, key: str) -> int:
        """Hop in samples between frames of every key (320 = 20 ms)."""
        return self.downsample_rate

    def forward(self, wavs: list[torch.Tensor]) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        if len(wavs) == 0:
            raise ValueError("UpstreamExpert got an empty list of waveforms")
        wavs = [w if w.shape[0] >= RECEPTIVE_FIELD else nn.functional.pad(w, (0, RECEPTIVE_FIELD - w.shape[0])) for w in wavs]
        padded, padding_mask, _ = pad_waveforms([w.reshape(-1) for w in wavs])
        states = self.hidden_states_fn(self.model, padded, padding_mask.to(padded.device))
        return {"hidden_states": states, "last_hidden_state": states[-1]}
