"""Configuration of a mini teacher pretraining run (HuBERT's iterations), read from YAML.

Data, optimiser and trainer sections are the distillation ones (:mod:`audio_compress.tasks.config`),
so a pretraining YAML reads like a distillation YAML (``egs/mini_speech/conf/pretrain_teacher.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from audio_compress.tasks.config import DataConfig, OptimConfig, TrainerConfig
from audio_compress.teachers.configs import get_config
from audio_compress.teachers.context import check_delta_layout
from audio_compress.teachers.filterbank import check_filterbank_layout
from compact_ssl.config import YamlConfig


@dataclass
class TargetConfig:
    """k-means targets (:mod:`audio_compress.teachers.pretrain.targets`): HuBERT's first iteration clusters
    standardised 39-dim MFCC frames; every later iteration trains a fresh model on the clusters of the hidden
    states ``layer`` of the previous iteration's model (HuBERT Base's second iteration: layer 6 of 12)."""

    num_clusters: int = 64
    max_frames: int | None = 200_000  #: k-means is fitted on at most this many training frames (seeded subset)
    iterations: int = 1  #: HuBERT iterations, each ``trainer.max_steps`` long; the result is the last one's model
    #: per-utterance mean and variance normalisation of the first iteration's MFCC frames (Kaldi's
    #: ``apply-cmvn``): the clusters then follow the phones rather than each recording's channel and loudness
    cmvn: bool = False
    layer: int = 2  #: hidden state (0: the Transformer's input, i: layer i's output) clustered for the next iteration


@dataclass
class MaskConfig:
    """Span masking of the projected CNN features (HuBERT: 0.8 and 10)."""

    mask_prob: float = 0.8
    mask_length: int = 10
    min_masks: int = 2


@dataclass
class PretrainConfig(YamlConfig):
    """One masked-prediction pretraining run of a named transformers architecture."""

    architecture: str = "mini_hubert"  #: a name of :data:`audio_compress.teachers.configs.ARCHITECTURES`
    architecture_overrides: dict = field(default_factory=dict)
    #: the CNN front end's start: ``learned`` (the architecture's random init, learnt like the rest),
    #: ``filterbank`` (a log-compressed spectrum of mel-spaced centre filters,
    #: :mod:`audio_compress.teachers.filterbank`; needs the filterbank layout, e.g. ``mini_hubert_fb``) or
    #: ``mel_filterbank`` (each band the mean of a DFT grid's magnitudes under its mel triangle; ``conv_dim``
    #: (3, 4A+1, LB, B) sets the grid's A bins, e.g. (3, 797, 960, 64) for 64 bands over the 199 bins of a
    #: 400-point DFT; mini_hubert_fb's own (3, 257, 960, 64) gives a coarse grid of 64 bins 125 Hz apart)
    frontend: Literal["learned", "filterbank", "mel_filterbank"] = "learned"
    #: keep the CNN front end as it starts (no gradient, no update)
    freeze_frontend: bool = False
    #: the start of the feature projection and positional convolution: ``random`` (the architecture's init),
    #: ``deltas`` (each front-end channel beside its delta, :mod:`audio_compress.teachers.context`) or
    #: ``paired_deltas`` (the same, each signal beside its negative too, so that a post-LN encoder's per-frame
    #: normalisation keeps the frame's level; twice the width of ``deltas``)
    positional_init: Literal["random", "deltas", "paired_deltas"] = "random"
    #: with ``deltas`` or ``paired_deltas``: 1 puts each channel beside its delta, 2 beside its delta and
    #: delta-delta
    delta_order: int = 1
    proj_dim: int = 64  #: width of the final projection and the label embeddings
    temperature: float = 0.1  #: of the cosine-similarity logits
    #: weight of the unmasked frames' cross-entropy beside the masked frames' (HuBERT's ``1 - alpha``, fairseq's
    #: ``pred_nomask_weight``; 0 is the paper's ``alpha = 1``). Above 0 every valid frame trains the model, not
    #: only the masked ones, which the mini teacher's CPU budget needs.
    unmasked_weight: float = 0.0
    targets: TargetConfig = field(default_factory=TargetConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    @property
    def mel_frontend(self) -> bool:
        """The front end's bands are mel triangles over a DFT grid (``frontend: mel_filterbank``)."""
        return self.frontend == "mel_filterbank"

    @property
    def paired_deltas(self) -> bool:
        """The deltas start lays every signal beside its negative (``positional_init: paired_deltas``)."""
        return self.positional_init == "paired_deltas"

    def __post_init__(self) -> None:
        # the architecture, its overrides and a filterbank's layout, checked when the config loads: a recipe's
        # preflight and the Python API refuse them before any k-means or training
        try:
            hf_config = get_config(self.architecture, **self.architecture_overrides)
        except KeyError as err:
            raise ValueError(err.args[0]) from err
        if self.frontend != "learned":
            check_filterbank_layout(hf_config, mel=self.mel_frontend)
        if self.positional_init != "random":
            check_delta_layout(hf_config, self.delta_order, paired=self.paired_deltas)
        elif self.delta_order != 1:
            raise ValueError(f"delta_order {self.delta_order} needs positional_init: deltas or paired_deltas (it is "
                             f"{self.positional_init!r}, which starts no deltas)")
        if self.targets.iterations < 1:
            raise ValueError(f"targets.iterations must be at least 1, got {self.targets.iterations}")
        if self.targets.iterations > 1 and not 0 <= self.targets.layer <= hf_config.num_hidden_layers:
            raise ValueError(f"targets.layer must be a hidden state of {self.architecture} (0 to "
                             f"{hf_config.num_hidden_layers}), got {self.targets.layer}")
