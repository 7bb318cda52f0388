"""Everything random that a resumed run needs to continue as if it had never stopped.

* :class:`RandomStateCheckpoint` stores the global Python / NumPy / torch (CPU and CUDA) random
  states and every random generator held by the LightningModule (``torch.Generator``,
  ``numpy.random.Generator``, ``random.Random`` attributes of any submodule, such as a span-mask
  generator) in each checkpoint and puts them back when training resumes.
* :class:`ResumableDataLoader` is a ``DataLoader`` that remembers its position in the epoch (and
  :class:`ResumableShuffleSampler` its shuffling seed); Lightning stores them in the checkpoint,
  and a resumed run skips exactly the batches already trained on.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from contextlib import contextmanager
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, RandomSampler

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
    A validation that follows a checkpoint of the same step (a step checkpoint saved before the
    evaluation at that step) leaves the random states as it found them: Lightning does not repeat
    that evaluation when it resumes from the checkpoint, so whatever it drew would otherwise be
    missing from the resumed run. A checkpoint without random states (written before this callback
    existed) resumes with the fresh seeds.
    """

    KEY = "random_state"

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._saved_at_step: int | None = None
        self._before_validation: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        generators = {name: _get_state(g) for name, g in module_generators(pl_module).items()}
        checkpoint[self.KEY] = {"global": global_random_state(), "generators": generators,
                                "rank": trainer.global_rank}
        self._saved_at_step = trainer.global_step

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(self.KEY)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.global_step == self._saved_at_step:
            self._before_validation = global_random_state()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._before_validation is not None:
            set_global_random_state(self._before_validation)
            self._before_validation = None

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


class ResumableShuffleSampler(RandomSampler):
    """``RandomSampler`` (without replacement) that remembers the seed of its epoch.

    Like ``RandomSampler``, each pass draws one seed from the global torch generator when it
    starts and permutes with it, so a run gives the same order as with ``shuffle=True`` of a
    plain ``DataLoader``. A mid-epoch resume cannot redraw that seed (the global state has moved
    on): :meth:`resume` hands it back, with the number of items already given out.
    Lightning replaces it by a ``DistributedSampler`` under DDP, as it does a ``RandomSampler``.
    """

    def __init__(self, data_source: Sized) -> None:
        super().__init__(data_source)
        self.epoch = 0
        #: the seed of the current (or last) pass
        self.last_seed: int | None = None
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, seed: int, skip: int) -> None:
        """Make the next pass the one of ``seed``, without its first ``skip`` items."""
        self._resume = (seed, skip)

    def __iter__(self) -> Iterator[int]:
        if self._resume is not None:
            (seed, skip), self._resume = self._resume, None
        else:
            seed, skip = int(torch.empty((), dtype=torch.int64).random_().item()), 0
        self.last_seed = seed
        generator = torch.Generator()
        generator.manual_seed(seed)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()[skip:]


@contextmanager
def _global_torch_state_kept() -> Iterator[None]:
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` that a mid-epoch resume continues where the interrupted run stopped.

    It draws from the global generators exactly as a plain ``DataLoader`` does (so seeded results
    do not change) and remembers how many batches of the current epoch it has given out, and the
    shuffling seed; Lightning stores that in checkpoints and calls :meth:`load_state_dict` before a
    resumed epoch starts. The loader then skips the batches already trained on: through the batch
    sampler's ``skip(n)`` (e.g. a bucketing sampler whose order comes from its seed and epoch) or
    through :class:`ResumableShuffleSampler`, so skipped batches are not loaded; with any other
    sampler they are drawn and dropped with the global random state kept. Exact with
    ``num_workers=0``; with workers, the order is exact but per-worker random draws are not.

    Args:
        shuffle: shuffle with a :class:`ResumableShuffleSampler` (``shuffle=True`` of ``DataLoader``).
        All other arguments are ``DataLoader``'s.
    """

    def __init__(self, dataset: Any, *args: Any, shuffle: bool = False, **kwargs: Any) -> None:
        if shuffle:
            kwargs["sampler"] = ResumableShuffleSampler(dataset)
        super().__init__(dataset, *args, **kwargs)
        self._served = 0
        self._pending: dict[str, Any] | None = None

    def _epoch(self) -> int:
        for sampler in (self.batch_sampler, self.sampler, getattr(self.batch_sampler, "sampler", None)):
            if sampler is not None and hasattr(sampler, "epoch"):
                return int(sampler.epoch)
        return 0

    def _skip_in_sampler(self, batches: int, seed: int | None) -> bool:
        """Tell the samplers to leave out ``batches`` batches; False when they cannot."""
        if hasattr(self.batch_sampler, "skip"):
            self.batch_sampler.skip(batches)
            return True
        if isinstance(self.sampler, ResumableShuffleSampler) and seed is not None and self.batch_size is not None:
            self.sampler.resume(seed, batches * self.batch_size)
            return True
        return False

    def __iter__(self) -> Iterator[Any]:  # a generator: runs when the epoch's first batch is asked for
        pending, self._pending = self._pending, None
        skip = int(pending["batches_served"]) if pending and pending["epoch"] == self._epoch() else 0
        self._served = skip
        if not skip:
            iterator = super().__iter__()
        else:
            # the interrupted run drew its loader seeds when the epoch started, not here
            with _global_torch_state_kept():
                in_sampler = self._skip_in_sampler(skip, pending.get("sampler_seed"))
                iterator = super().__iter__()
                for _ in range(0 if in_sampler else skip):
                    next(iterator)
        for batch in iterator:
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Position in the current epoch, saved by Lightning in checkpoints."""
        return {"epoch": self._epoch(), "batches_served": self._served,
                "sampler_seed": getattr(self.sampler, "last_seed", None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Skip, in the next epoch if it is the checkpoint's, the batches it had given out."""
        self._pending = dict(state)
