"""Configuration of an ICBHI training run, read from the recipe's YAML (the single source of truth).

A YAML file mirrors :class:`IcbhiConfig`; unknown keys are errors. ``key.sub=value`` overrides
from the command line are applied on top. The strict builder and the override parser are shared
with :mod:`audio_compress.tasks.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audio_cls.features import FeatureConfig, SpecAugConfig
from audio_cls.losses import NEGATIVES
from audio_cls.models.ast import ARCHS, INITS
from compact_ssl.config import YamlConfig
from compact_ssl.training import TrainerConfig as CoreTrainerConfig

METHODS = ("ce", "patchmix", "patchmix_cl")
#: What the mixed projection is pulled towards: the clean feature (with or without gradient) or
#: its projection (with or without gradient).
TARGET_TYPES = ("grad_block", "grad_flow", "project_block", "project_flow")


@dataclass
class DataConfig:
    """Manifests (from data preparation), the feature cache and batching."""

    train: str = "data/train/cycles.tsv"
    test: str = "data/test/cycles.tsv"
    cache_dir: str = "dump/features"
    num_classes: int = 4  #: 4 (normal, crackle, wheeze, both) or 2 (normal vs abnormal)
    batch_size: int = 8  #: training batch per device (the last partial batch is dropped)
    eval_batch_size: int = 32  #: evaluation batch (every test cycle is evaluated)
    num_workers: int = 4
    #: 0: the paper protocol, the best epoch is chosen on the test set. Above 0: the clean protocol, this
    #: fraction of the training patients is held out (patient-disjoint, stratified) and the best epoch is
    #: chosen on it; the model trains on the other patients only
    val_fraction: float = 0.0
    val_seed: int = 0  #: seed of the held-out patient draw; separate from the training seed so every seed shares one split

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")

    @property
    def selected_on(self) -> str:
        """Where the best epoch is chosen: ``test`` (paper protocol) or ``validation`` (clean protocol)."""
        return "validation" if self.val_fraction > 0 else "test"


@dataclass
class ModelConfig:
    """Backbone, its initial weights and the projector width."""

    arch: str = "ast_base"
    init: str = "audioset"  #: audioset | imagenet | random
    checkpoint: str = ""  #: transformers folder or .pth (see audio_cls.models.ast)
    swapped_pos_embed: bool = False  #: reproduce the official code's swapped frequency/time position layout
    proj_dim: int = 768  #: projector output; must equal the backbone width for grad_* targets

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"model.arch must be one of {sorted(ARCHS)}, got {self.arch!r}")
        if self.init not in INITS:
            raise ValueError(f"model.init must be one of {INITS}, got {self.init!r}")


@dataclass
class MethodConfig:
    """Options of the three methods (each reads its own)."""

    weighted_ce: bool = False  #: inverse-frequency class weights in the CE terms
    mix_beta: float = 1.0  #: lam ~ Beta(mix_beta, mix_beta); <= 0 disables mixing
    time_domain: bool = False  #: swap whole time columns instead of single patches
    temperature: float = 0.06
    alpha: float = 1.0  #: weight of the contrastive term
    negative_pair: str = "all"  #: all | diff_label
    target_type: str = "grad_block"

    def __post_init__(self) -> None:
        if self.negative_pair not in NEGATIVES:
            raise ValueError(f"method_args.negative_pair must be one of {NEGATIVES}, got {self.negative_pair!r}")
        if self.target_type not in TARGET_TYPES:
            raise ValueError(f"method_args.target_type must be one of {TARGET_TYPES}, got {self.target_type!r}")


@dataclass
class OptimConfig:
    """Adam with a per-epoch cosine schedule and the reference's step-halving average."""

    lr: float = 5.0e-5
    weight_decay: float = 1.0e-6
    eta_min_ratio: float = 1.0e-3  #: final lr = lr * eta_min_ratio
    #: after every optimizer step, weights and BN buffers = ma_beta * before + (1 - ma_beta) * after
    #: (the reference's --ma_update --ma_beta 0.5); 0 disables it
    ma_beta: float = 0.5


@dataclass
class TrainerConfig(CoreTrainerConfig):
    """Lightning trainer settings (``seed`` is the run's top-level one) and model selection."""

    max_epochs: int = 50
    precision: str = "16-mixed"
    #: the paper protocol keeps the epoch with the best test Score among those with Se above this (%)
    min_sensitivity: float = 5.0


@dataclass
class IcbhiConfig(YamlConfig):
    """One training run (one method, one seed)."""

    method: str = "patchmix_cl"
    seed: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method_args: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.data.num_classes not in (2, 4):
            raise ValueError(f"data.num_classes must be 4 or 2, got {self.data.num_classes}")
        if self.method != "ce" and self.data.batch_size < 2:
            # mixing needs partners, and the projector's BatchNorm needs more than one sample
            raise ValueError(f"method {self.method} needs data.batch_size >= 2, got {self.data.batch_size}")


#: module-level names of the loaders (``load_config(path, overrides)`` etc.)
load_config = IcbhiConfig.load
config_from_dict = IcbhiConfig.from_dict
