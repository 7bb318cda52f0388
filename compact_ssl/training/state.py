"""Everything random that a resumed run needs to continue as if it had never stopped.

* :class:`RandomStateCheckpoint` stores the global Python / NumPy / torch (CPU and CUDA) random
  states and every random generator held by the LightningModule (``torch.Generator``,
  ``numpy.random.Generator``, ``random.Random`` attributes of any submodule, such as a span-mask
  generator) in each checkpoint and puts them back when training resumes.
* :class:`ResumableDataLoader` is a ``DataLoader`` whose order and worker seeds depend only on
  ``(seed, epoch)`` and which remembers how many batches of the current epoch it has given out;
  Lightning stores that in the checkpoint, and a resumed run skips exactly those batches
  (through the batch sampler's ``skip`` when it has one, so skipped batches are not loaded).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Sampler

_RANDOM_TYPES = (torch.Generator, np.random.Generator, random.Random)


def module_generators(module: torch.nn.Module) -> dict[str, Any]:
    """Random generators held as attributes of ``module`` or its submodules, by dotted name."""
    found = {}
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            if isinstance(value, _RANDOM_TYPES):
                found[f"{prefix}.{name}" if prefix else name] = value
    return found


def _get_state(generator: Any) -> Any:
    if isinstance(generator, torch.Generator):
        return generator.get_state()
    if isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    return generator.getstate()


def _set_state(generator: Any, state: Any) -> None:
    if isinstance(generator, torch.Generator):
        generator.set_state(state)
    elif isinstance(generator, np.random.Generator):
        generator.bit_generator.state = state
    else:
        generator.setstate(state)


def global_random_state() -> dict[str, Any]:
    """The global random states of Python, NumPy and torch (CPU, and CUDA when available), in
    types that checkpoints loaded with ``weights_only=True`` accept (no NumPy arrays)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_random_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`global_random_state`."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStateCheckpoint(Callback):
    """Saves and restores the random states (see the module docstring).

    The states are put back at ``on_train_start``, after the sanity check and just before the
    first resumed training batch, which is where the interrupted run was when it saved them.
    A checkpoint without random states (written before this callback existed) resumes with a
    warning-free fallback: the fresh seeds.
    """

    KEY = "random_state"

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        generators = {name: _get_state(g) for name, g in module_generators(pl_module).items()}
        checkpoint[self.KEY] = {"global": global_random_state(), "generators": generators,
                                "rank": trainer.global_rank}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(self.KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        # every rank saved its own states but only rank 0 writes the file: other ranks keep
        # their fresh seeds for the global state and take the module generators of rank 0
        if state.get("rank", 0) == trainer.global_rank:
            set_global_random_state(state["global"])
        generators = module_generators(pl_module)
        missing = sorted(set(state["generators"]) - set(generators))
        if missing:
            raise RuntimeError(f"the checkpoint holds random generators {missing} that the model no longer has; "
                               "resume with the code that wrote it or start a fresh run (--resume never)")
        for name, saved in state["generators"].items():
            _set_state(generators[name], saved)


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for ``(seed, epoch)``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of ``range(n)`` that depends only on ``(seed, epoch)``
    (``set_epoch`` is called by Lightning), unlike a ``RandomSampler`` that draws from the global
    generator, whose state at an epoch's start a mid-epoch resume cannot recreate."""

    def __init__(self, num_items: int, seed: int = 0) -> None:
        self.num_items = num_items
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.num_items, generator=g).tolist())


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` that a mid-epoch resume continues where the interrupted run stopped.

    Worker seeds come from a generator reseeded with ``(seed, epoch)`` at every epoch, so they do
    not depend on the global random state. Lightning saves :meth:`state_dict` in checkpoints and
    calls :meth:`load_state_dict` before a resumed epoch starts; the loader then skips the
    batches already trained on (the batch sampler's ``skip(n)`` when it has one, else the batches
    are drawn and dropped).

    Args:
        dataset: as for ``DataLoader``.
        seed: base seed of the worker seeds and, with ``shuffle=True``, of the order.
        shuffle: an :class:`EpochShuffleSampler` (order from ``(seed, epoch)``) instead of a
            ``RandomSampler``.
        All other arguments are ``DataLoader``'s.
    """

    def __init__(self, dataset: Any, *args: Any, seed: int = 0, shuffle: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator())
        if shuffle:
            kwargs["sampler"] = EpochShuffleSampler(len(dataset), seed)
        super().__init__(dataset, *args, **kwargs)
        self.seed = seed
        self._served = 0
        self._skip = 0
        self._skip_epoch: int | None = None

    def _epoch(self) -> int:
        for sampler in (self.batch_sampler, self.sampler, getattr(self.batch_sampler, "sampler", None)):
            if sampler is not None and hasattr(sampler, "epoch"):
                return int(sampler.epoch)
        return 0

    def __iter__(self) -> Iterator[Any]:  # a generator: the epoch is read when iteration starts
        epoch = self._epoch()
        self.generator.manual_seed(epoch_seed(self.seed, epoch))
        skip = self._skip if self._skip_epoch == epoch else 0
        self._skip, self._skip_epoch = 0, None
        self._served = skip
        batch_sampler = self.batch_sampler
        if skip and hasattr(batch_sampler, "skip"):
            batch_sampler.skip(skip)
            skip = 0
        for batch in super().__iter__():
            if skip:
                skip -= 1
                continue
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Position in the current epoch (batches given out), saved by Lightning in checkpoints."""
        return {"epoch": self._epoch(), "batches_served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Skip the batches a checkpoint says were already given out in its epoch."""
        self._skip = int(state["batches_served"])
        self._skip_epoch = int(state["epoch"])
