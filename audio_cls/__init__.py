"""Respiratory sound classification: AST with Patch-Mix contrastive learning on ICBHI 2017.

Layers (lower never import higher): :mod:`audio_cls.data` (ICBHI reader, split, cycles, mini
corpus, dataset) -> :mod:`audio_cls.features` (fbank, SpecAugment, cache) ->
:mod:`audio_cls.models` (AST backbone, heads, checkpoint loading) -> :mod:`audio_cls.patchmix`,
:mod:`audio_cls.losses`, :mod:`audio_cls.metrics` (pure functions) -> :mod:`audio_cls.tasks`
(config, Lightning module and data module) -> :mod:`audio_cls.bin` (recipe entry points).
"""
