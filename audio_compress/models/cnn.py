"""wav2vec 2.0-style convolutional feature encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audio_compress.models._inplace import gelu_fresh, needs_graph


class ConvBlock(nn.Module):
    """Conv1d without bias, optional per-channel GroupNorm, GELU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, group_norm: bool):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=False)
        nn.init.kaiming_normal_(self.conv.weight)
        self.norm = nn.GroupNorm(out_channels, out_channels, affine=True) if group_norm else None

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """``x``: (B, C_in, T_in); ``valid``: (B, T_out) bool, True at frames computed from real samples (a prefix)."""
        conv = self.conv
        if conv.kernel_size[0] == 1 and conv.stride[0] == 1:
            # A 1x1 convolution is a matrix product; CPU convolution kernels run it slower. bmm
            # (not matmul, which computes the transposed product) writes the (B, C, T) layout directly.
            x = torch.bmm(conv.weight[:, :, 0].expand(x.shape[0], -1, -1), x)
        else:
            x = conv(x)
        if self.norm is not None:
            # x is this block's fresh convolution output: the norm may write over it
            x = self.norm(x) if valid is None else self._masked_group_norm(x, valid, inplace=not needs_graph(x))
        return gelu_fresh(x)

    def _masked_group_norm(self, x: Tensor, valid: Tensor, inplace: bool = False) -> Tensor:
        # One group per channel, statistics over valid frames only: the standard GroupNorm
        # would let the amount of padding change every frame of a padded row. Valid frames
        # are a prefix of each row, so per-row reductions over that slice give the statistics
        # (reductions are cheap; each elementwise pass over the (B, C, T) map is not): a sum,
        # one centring pass, a norm of the centred values, one fused multiply-add. ``inplace``
        # writes over x (only for a fresh intermediate nobody else reads).
        norm = self.norm
        lengths = valid.sum(dim=1).tolist()
        # An empty slice sums to 0: a row without valid frames gets zero mean and variance.
        mean = torch.stack([x[b, :, :n].sum(dim=1) / max(n, 1) for b, n in enumerate(lengths)]).unsqueeze(-1)
        centred = x.sub_(mean) if inplace else x - mean
        var = torch.stack([torch.linalg.vector_norm(centred[b, :, :n], dim=1).square() / max(n, 1)
                           for b, n in enumerate(lengths)]).unsqueeze(-1)
        scale = torch.rsqrt(var + norm.eps) * norm.weight.view(1, -1, 1)
        if inplace:
            return centred.mul_(scale).add_(norm.bias.view(1, -1, 1))
        return torch.addcmul(norm.bias.view(1, -1, 1), centred, scale)


class ConvFeatureExtractor(nn.Module):
    """Stack of :class:`ConvBlock` s; GroupNorm on the first block only (wav2vec 2.0 "default" mode)."""

    def __init__(self, conv_layers: list[tuple[int, int, int]]):
        super().__init__()
        blocks = []
        in_channels = 1
        for i, (channels, kernel, stride) in enumerate(conv_layers):
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, group_norm=i == 0))
            in_channels = channels
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, wavs: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Map ``wavs`` (B, L) to features (B, C, T).

        With a sample-level ``padding_mask`` (True = padded), the first block's
        normalisation ignores padded positions, so valid frames of a padded row equal
        those of the same row without padding. Later blocks need nothing: a valid
        output frame only reads valid samples.

        On CPU the rows go through the stack one at a time: the long 1-D convolutions of a
        single row run about 20 % faster than the batched ones (measured at 4 x 10 s, one
        thread), and every row's result is the same either way.
        """
        if wavs.device.type == "cpu" and wavs.shape[0] > 1:
            masks = [None] * wavs.shape[0] if padding_mask is None else padding_mask.split(1)
            return torch.cat([self._forward(row, mask) for row, mask in zip(wavs.split(1), masks)])
        return self._forward(wavs, padding_mask)

    def _forward(self, wavs: Tensor, padding_mask: Tensor | None) -> Tensor:
        x = wavs.unsqueeze(1)
        if padding_mask is not None:
            first = self.conv_layers[0].conv
            lengths = (~padding_mask).sum(dim=1)
            kernel, stride = first.kernel_size[0], first.stride[0]
            valid_len = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
            total = (wavs.shape[1] - kernel) // stride + 1
            valid = torch.arange(total, device=wavs.device).unsqueeze(0) < valid_len.unsqueeze(1)
            x = self.conv_layers[0](x, valid)
            blocks = self.conv_layers[1:]
        else:
            blocks = self.conv_layers
        i = 0
        while i < len(blocks):
            if i + 1 < len(blocks) and _streams_into(blocks[i], blocks[i + 1], x):
                x = _pointwise_then_strided(blocks[i], blocks[i + 1], x)
                i += 2
            else:
                x = blocks[i](x)
                i += 1
        return x


#: Output frames of the strided block computed per chunk by :func:`_pointwise_then_strided`; the
#: pointwise block's chunk (256 channels x 2 x 1024 frames, 2 MiB) stays in the core's cache.
STREAM_CHUNK = 1024


def _streams_into(pointwise: ConvBlock, strided: ConvBlock, x: Tensor) -> bool:
    """Whether ``pointwise`` then ``strided`` may run chunk by chunk on ``x``: on CPU when autograd records
    nothing (a backward would need the whole map), two un-normalised blocks, the first 1x1."""
    first, second = pointwise.conv, strided.conv
    if x.device.type != "cpu" or any(needs_graph(t) for t in (x, first.weight, second.weight)):
        return False
    return (first.kernel_size[0] == 1 and first.stride[0] == 1 and pointwise.norm is None and strided.norm is None
            and x.shape[-1] >= second.kernel_size[0])


def _pointwise_then_strided(pointwise: ConvBlock, strided: ConvBlock, x: Tensor) -> Tensor:
    """``strided(pointwise(x))`` with the pointwise block's output made :data:`STREAM_CHUNK` output frames
    at a time, so it never exists whole.

    That map is the CNN's widest (ARM/STaR: 256 channels at 3,200 frames per second, 33 MB for 10 s):
    whole, every pass over it (product, GELU, the strided convolution's read) goes through memory; a
    chunk stays in the core's cache (ARM's CNN at 1 x 10 s, one thread: 160 -> 118 ms). Each output
    chunk reads its input frames ``[s t0, s (t1 - 1) + k)``; neighbouring chunks share ``k - s`` of
    them, which are computed twice (one frame in 2048 for k = 3, s = 2). Frame by frame the values
    are those of the two blocks.
    """
    conv = strided.conv
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    frames = (x.shape[-1] - kernel) // stride + 1
    out = x.new_empty(x.shape[0], conv.out_channels, frames)
    for start in range(0, frames, STREAM_CHUNK):
        stop = min(start + STREAM_CHUNK, frames)
        hidden = pointwise(x[..., start * stride:(stop - 1) * stride + kernel])
        out[..., start:stop] = F.conv1d(hidden, conv.weight, stride=stride)
    return gelu_fresh(out)
