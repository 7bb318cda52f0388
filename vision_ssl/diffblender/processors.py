"""Installing DiffBlender's fusers into a diffusers ``UNet2DConditionModel`` without forking it.

Design. Every ``BasicTransformerBlock`` of the UNet gets two attention processors, each wrapping
the processor that was there before (so the attention kernel is the base model's own):

- ``attn1`` -> :class:`SpatialFuserProcessor`: runs the block's self-attention ``a``, then the
  spatial (local) gated self-attention on ``v = h + a`` with the layout tokens, and returns
  ``a + (fuser(v) - v)``; the block adds its input ``h`` back, giving ``fuser(v)``. The processor
  only sees the normalised input, so a forward pre-hook on the block hands it ``h``.
- ``attn2`` -> :class:`NonSpatialFuserProcessor`: rewrites the text context with the non-spatial
  (global) gated self-attention over ``[text; attribute tokens]``, block-locally, then runs the
  cross-attention on it.

This reproduces the official order inside a block (self-attention, spatial fuser, non-spatial
fuser on the context, cross-attention, feed-forward) and uses nothing of diffusers' deprecated
GLIGEN path. Per-call condition tokens and gate scales are delivered through one shared
:class:`FuserState` (not ``cross_attention_kwargs``, which diffusers filters per processor
signature and also sends to attn1). When the state holds no tokens, or a scale is 0, a processor
calls the wrapped one with the original arguments: the UNet is then bitwise the base model.

The processors are plain objects, not ``nn.Module``s: the fuser weights stay in the adapter (so
the UNet's own ``state_dict`` is unchanged and the adapter saves alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.attention import BasicTransformerBlock
from torch import nn


@dataclass
class FuserState:
    """Per-call conditioning shared by all processors of one attached UNet."""

    spatial: torch.Tensor | None = None  #: B x N_sp x D layout tokens
    nonspatial: torch.Tensor | None = None  #: B x N_nsp x D attribute tokens
    spatial_scale: float = 1.0
    nonspatial_scale: float = 1.0

    def clear(self) -> None:
        self.spatial = self.nonspatial = None
        self.spatial_scale = self.nonspatial_scale = 1.0


def transformer_blocks(unet: nn.Module) -> dict[str, BasicTransformerBlock]:
    """The UNet's transformer blocks with self- and cross-attention, by module name."""
    return {name: m for name, m in unet.named_modules()
            if isinstance(m, BasicTransformerBlock) and m.attn2 is not None}


class SpatialFuserProcessor:
    """attn1 processor: the wrapped self-attention, then the spatial gated fuser."""

    def __init__(self, base: Any, fuser: nn.Module, state: FuserState) -> None:
        self.base, self.fuser, self.state = base, fuser, state
        self.block_input: torch.Tensor | None = None

    def capture(self, block: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook of the transformer block: remember its input ``h``."""
        self.block_input = args[0] if args else kwargs["hidden_states"]

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        out = self.base(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                        attention_mask=attention_mask, temb=temb)
        h, self.block_input = self.block_input, None
        tokens, scale = self.state.spatial, self.state.spatial_scale
        if tokens is None or scale == 0:
            return out
        if h is None:
            raise RuntimeError("spatial fuser: the block input was not captured; attach the adapter with "
                               "DiffBlenderAdapter.attach(unet) instead of setting processors by hand")
        v = h + out
        return out + (self.fuser(v, tokens, scale) - v)


class NonSpatialFuserProcessor:
    """attn2 processor: the non-spatial gated fuser on the context, then the wrapped cross-attention."""

    def __init__(self, base: Any, fuser: nn.Module, state: FuserState) -> None:
        self.base, self.fuser, self.state = base, fuser, state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        tokens, scale = self.state.nonspatial, self.state.nonspatial_scale
        if tokens is not None and scale != 0 and encoder_hidden_states is not None:
            encoder_hidden_states = self.fuser(encoder_hidden_states, tokens, scale)
        return self.base(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                         attention_mask=attention_mask, temb=temb)


class Installation:
    """The processors and hooks put into one UNet; :meth:`remove` restores the base processors."""

    def __init__(self, unet: nn.Module, spatial: dict[str, nn.Module], nonspatial: dict[str, nn.Module],
                 state: FuserState) -> None:
        self.unet = unet
        self._restore: list[tuple[nn.Module, Any]] = []
        self._hooks = []
        blocks = transformer_blocks(unet)
        if any(isinstance(b.attn1.processor, SpatialFuserProcessor)
               or isinstance(b.attn2.processor, NonSpatialFuserProcessor) for b in blocks.values()):
            raise RuntimeError("this UNet already has DiffBlender processors; detach the other adapter first")
        for name, block in blocks.items():
            if name in spatial:
                proc = SpatialFuserProcessor(block.attn1.processor, spatial[name], state)
                self._restore.append((block.attn1, block.attn1.processor))
                block.attn1.set_processor(proc)
                self._hooks.append(block.register_forward_pre_hook(proc.capture, with_kwargs=True))
            if name in nonspatial:
                self._restore.append((block.attn2, block.attn2.processor))
                block.attn2.set_processor(NonSpatialFuserProcessor(block.attn2.processor, nonspatial[name], state))

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        for attn, base in self._restore:
            attn.set_processor(base)
        self._hooks, self._restore = [], []
