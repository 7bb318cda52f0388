"""Elementwise steps that write over a fresh intermediate when autograd does not need it.

On CPU a new multi-megabyte result is a fresh memory mapping whose first touch costs page
faults; for GELU and softmax over the long CNN maps and the attention maps that costs as
much as the arithmetic. Writing in place is only safe when nothing else reads the input:
callers pass tensors they have just produced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def needs_graph(x: Tensor) -> bool:
    """Whether autograd records an operation on ``x`` (then it must not be overwritten)."""
    return torch.is_grad_enabled() and x.requires_grad


def gelu_fresh(x: Tensor) -> Tensor:
    """Exact GELU of ``x``, computed in place unless autograd needs ``x``."""
    return F.gelu(x) if needs_graph(x) else torch.ops.aten.gelu_(x)


def softmax_fresh(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax of ``x`` over ``dim``, in place unless autograd or autocast is involved.

    Autocast may change the output dtype (fp32 softmax of half scores), so it keeps the out-of-place call.
    """
    if needs_graph(x) or torch.is_autocast_enabled(x.device.type):
        return x.softmax(dim=dim)
    return torch.softmax(x, dim, out=x)
