"""Respiratory sound classification: AST with Patch-Mix contrastive learning on ICBHI 2017.

Layers (lower never import higher): :mod:`audio_cls.data` (ICBHI reader, split, cycles, mini
corpus, dataset) -> :mod:`audio_cls.features` (fbank, SpecAugment, cache) ->
:mod:`audio_cls.models` (AST backbone, heads, checkpoint loading) -> :mod:`audio_cls.patchmix`,
:mod:`audio_cls.losses`, :mod:`audio_cls.metrics` (pure functions) -> :mod:`audio_cls.tasks`
(config, Lightning module and data module) and :mod:`audio_cls.pretrained` (the trained classifier
as a shareable folder) -> :mod:`audio_cls.bin` (recipe entry points).

``audio_cls.from_pretrained(folder_or_repo_id)`` loads a classifier written by
``python -m audio_cls.bin.export`` (or ``IcbhiClassifier.save_pretrained``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audio_cls.pretrained import IcbhiClassifier


def from_pretrained(folder_or_repo_id: str | Path, **kwargs: Any) -> IcbhiClassifier:
    """:meth:`audio_cls.pretrained.IcbhiClassifier.from_pretrained` (``revision``, ``cache_dir``,
    ``map_location`` pass through); imported on call, so ``import audio_cls`` stays light."""
    from audio_cls.pretrained import IcbhiClassifier

    return IcbhiClassifier.from_pretrained(folder_or_repo_id, **kwargs)
