"""ReFine: re-randomize the most source-specific layers of a pretrained backbone before each
episode's fine-tuning.

The default set is everything in the last residual block except its first conv + BN: the second
conv and BN (third for bottleneck blocks) and the 1x1-conv + BN shortcut when the block has one.
For the CD-FSL ResNet-10 this is ``layer4.0.conv2``, ``layer4.0.bn2``, ``layer4.0.downsample.0``
and ``layer4.0.downsample.1`` (2,492,416 parameters), the set of the reference's commands
(``4.c2 4.b2 4.cs 4.bs`` in its short notation, which :func:`resolve_layers` also accepts).

Fresh values follow PyTorch's default layer init, not the backbone's He-normal one: conv and
linear weights (and biases) ``U(-b, b)`` with ``b = 1 / sqrt(fan_in)``; BN weight 1, bias 0. BN
running statistics are buffers and stay as pretrained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

_SHORT = {"c": "conv", "b": "bn"}


def default_refine_layers(backbone: nn.Module) -> list[str]:
    """Module names of the default ReFine set of a :class:`~vision_ssl.backbones.resnet.ResNet`."""
    last_stage = f"layer{len(backbone.stages)}"
    index = len(backbone.stages[-1]) - 1
    block = backbone.stages[-1][index]
    last = 3 if hasattr(block, "conv3") else 2
    names = [f"{last_stage}.{index}.conv{last}", f"{last_stage}.{index}.bn{last}"]
    if block.downsample is not None:
        names += [f"{last_stage}.{index}.downsample.0", f"{last_stage}.{index}.downsample.1"]
    return names


def _expand_short(token: str, backbone: nn.Module) -> str:
    """``4.c2`` / ``4.1.b2`` / ``4.cs`` / ``4.bs`` -> module name (block defaults to the stage's last)."""
    parts = token.split(".")
    stage = int(parts[0])
    block = int(parts[1]) if len(parts) == 3 else len(backbone.stages[stage - 1]) - 1
    kind, which = parts[-1][0], parts[-1][1:]
    if which == "s":
        return f"layer{stage}.{block}.downsample.{0 if kind == 'c' else 1}"
    return f"layer{stage}.{block}.{_SHORT[kind]}{which}"


def resolve_layers(backbone: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """Module names to re-randomize: ``None`` or ``[]`` gives :func:`default_refine_layers`;
    entries are full module names (``layer4.0.conv2``) or the short form (``4.c2``)."""
    if not layers:
        return default_refine_layers(backbone)
    modules = dict(backbone.named_modules())
    names = []
    for token in layers:
        name = token
        if token not in modules and token[:1].isdigit():
            try:
                name = _expand_short(token, backbone)
            except (ValueError, IndexError, KeyError):
                name = token
        if name not in modules or name == "":
            raise ValueError(f"ReFine layer {token!r} is not a module of the backbone; use names such as "
                             f"{default_refine_layers(backbone)} or the short form 4.c2 4.b2 4.cs 4.bs")
        names.append(name)
    return names


def _fresh(module: nn.Module, generator: torch.Generator | None) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        fan_in = module.weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in)
        module.weight.uniform_(-bound, bound, generator=generator)
        if module.bias is not None:
            module.bias.uniform_(-bound, bound, generator=generator)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.affine:
            module.weight.fill_(1.0)
            module.bias.fill_(0.0)
    else:
        raise ValueError(f"ReFine resets conv, linear and BN layers, not {type(module).__name__}")


@torch.no_grad()
def rerandomize(backbone: nn.Module, layers: Sequence[str] | None = None,
                initial: Mapping[str, Tensor] | None = None, generator: torch.Generator | None = None) -> int:
    """Re-randomize ``layers`` (see :func:`resolve_layers`) of ``backbone`` in place.

    Args:
        backbone: the source-pretrained backbone (a fresh copy per episode).
        layers: module names; ``None``: the default set.
        initial: ``reinit`` mode: a state dict (e.g. the weights at the start of pretraining)
            whose values for these layers' parameters are copied instead of drawing fresh ones.
        generator: random source of the fresh values.

    Returns:
        The number of parameters that were reset.
    """
    modules = dict(backbone.named_modules())
    count = 0
    for name in resolve_layers(backbone, layers):
        module = modules[name]
        params = dict(module.named_parameters(recurse=False))
        if initial is None:
            _fresh(module, generator)
        else:
            for pname, param in params.items():
                key = f"{name}.{pname}"
                if key not in initial:
                    raise KeyError(f"ReFine reinit: the initial state dict has no entry {key!r}")
                param.copy_(initial[key])
        count += sum(p.numel() for p in params.values())
    return count
