"""Image self-supervised and few-shot methods: MixCo, SelfCon, SimCore, ReFine, DiffBlender.

Layers (lower never import higher): ``data`` and ``augment`` (datasets, multi-view pipelines) ->
``backbones`` and ``heads`` (nn.Modules) -> ``losses`` (pure functions) and ``schedules`` ->
``config`` and ``datamodule`` -> ``methods`` (one LightningModule per SSL method) and ``eval``
(linear probe, kNN monitor) -> ``bin`` (entry points). Nothing heavy is imported here.
"""
