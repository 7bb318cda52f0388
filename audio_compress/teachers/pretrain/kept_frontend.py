"""A frozen CNN front end's output kept per batch, so that a later epoch does not compute it again.

The length-bucketed sampler (:mod:`audio_compress.data.sampler`) makes fixed batches and only shuffles their
order, so without crops every epoch feeds the front end the same padded batches. A frozen front end (the mini
teacher's filterbank, ``freeze_frontend``) then returns the same output for them every epoch: the output is a
function of the padded batch, padding included (HuBERT's GroupNorm counts the padded samples of its row), so
it is kept per batch, keyed by its utterances and padded length, not per utterance. On the mini benchmark's
teacher this is about a tenth of a training step.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn


class KeptFrontend:
    """Wraps ``extractor.forward`` (the module itself is untouched: same parameters, same state-dict keys).

    Inside :meth:`batch`, the first call computes and keeps the output, later calls with that key return it;
    outside (the exported model, a probe), the front end runs as usual. At most ``max_bytes`` are kept, on the
    model's device (later batches are then computed every time).
    """

    def __init__(self, extractor: nn.Module, max_bytes: int):
        self._compute = extractor.forward
        self._kept: dict[Hashable, Tensor] = {}
        self._key: Hashable | None = None
        self.max_bytes = max_bytes
        self.kept_bytes = 0
        extractor.forward = self._forward

    @contextmanager
    def batch(self, key: Hashable) -> Iterator[None]:
        """The front end's calls in this block are for the batch ``key``."""
        self._key = key
        try:
            yield
        finally:
            self._key = None

    def _forward(self, input_values: Tensor) -> Tensor:
        if self._key is None:
            return self._compute(input_values)
        out = self._kept.get(self._key)
        if out is None:
            out = self._compute(input_values).detach()
            if self.kept_bytes + out.nbytes <= self.max_bytes:
                self._kept[self._key] = out
                self.kept_bytes += out.nbytes
        return out
