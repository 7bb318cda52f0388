"""Configuration of one vision SSL experiment (pretraining + linear evaluation), read from the
recipe's YAML, the single source of truth for hyperparameters.

A YAML file mirrors :class:`ExperimentConfig`; unknown keys are errors and ``key.sub=value``
overrides from the command line are applied on top (the strict builder and the override parser
are shared with :mod:`audio_compress.tasks.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compact_ssl.config import YamlConfig
from compact_ssl.training import TrainerConfig as CoreTrainerConfig
from vision_ssl.augment import AUGMENTATIONS
from vision_ssl.backbones import BACKBONES, SUBNETS
from vision_ssl.data import DATASETS
from vision_ssl.losses import LAMBDA_DISTRIBUTIONS
from vision_ssl.schedules import SCHEDULES, WARMUPS

METHODS = ("simclr", "mocov2", "supcon", "selfcon", "sl", "byol", "msl")
SSL_LOSSES = ("simclr", "byol")  #: self-supervised term of method msl
GAMMA_SCHEDULES = ("constant", "linear")
OPTIMIZERS = ("sgd", "adam")
FEATURES = ("backbone", "subnet")


def _choice(where: str, value: Any, choices) -> None:
    if value not in choices:
        raise ValueError(f"{where} must be one of {sorted(choices)}, got {value!r}")


@dataclass
class DataConfig:
    """Dataset, pretraining augmentation and batching."""

    dataset: str = "cifar100"  #: a name of vision_ssl.data.DATASETS
    root: str = ""  #: dataset root (recipes fill it from recipes/db.sh)
    train_split: str = "train"
    test_split: str = "test"  #: kNN monitor and linear-evaluation test split
    image_size: int = 32  #: side of the (cropped) training views
    train_aug: str = "supcon"  #: a name of vision_ssl.augment.AUGMENTATIONS
    eval_aug: str = "plain"  #: kNN monitor transform
    num_views: int = 2  #: augmented views per image (SelfCon-S / SupCon-S: 1)
    batch_size: int = 256  #: per device; the last partial batch is dropped
    num_workers: int = 4
    mean: list[float] | None = None  #: normalisation; None: the dataset's statistics
    std: list[float] | None = None

    def __post_init__(self) -> None:
        _choice("data.dataset", self.dataset, DATASETS)
        _choice("data.train_aug", self.train_aug, AUGMENTATIONS)
        _choice("data.eval_aug", self.eval_aug, AUGMENTATIONS)
        if self.num_views not in (1, 2):
            raise ValueError(f"data.num_views must be 1 or 2, got {self.num_views}")

    @property
    def norm(self) -> tuple[list[float], list[float]]:
        """(mean, std) used to normalise images."""
        info = DATASETS[self.dataset]
        return list(self.mean or info.mean), list(self.std or info.std)


@dataclass
class ModelConfig:
    """Backbone and projection head."""

    backbone: str = "resnet18_cifar"  #: a name of vision_ssl.backbones.BACKBONES
    head_hidden: int | None = None  #: hidden width of the projection MLP (None: backbone width)
    proj_dim: int = 128
    head_bn: bool = False  #: BatchNorm in the projection head
    #: simclr / byol / msl: true encodes the views (and MixCo mixes) in one forward pass over their
    #: concatenation, false in one pass each, so train-mode BatchNorm normalises every view (and mix)
    #: with its own batch statistics. null follows the reference code of the method: one pass each
    #: for BYOL and SimCLR + MixCo, one pass for plain SimCLR (CD-FSL / SimCore code; MixCo's own
    #: SimCLR baseline encodes each view alone: set false to match it).
    single_pass: bool | None = None

    def __post_init__(self) -> None:
        _choice("model.backbone", self.backbone, BACKBONES)


@dataclass
class ContrastConfig:
    """Temperatures and supervision of the contrastive term."""

    temperature: float = 0.1
    #: SupCon / SelfCon scale their loss by temperature / base_temperature (0.07 in the reference)
    base_temperature: float = 0.07
    supervised: bool = True  #: SupCon / SelfCon: use labels (false: -SU / -MU variants)


@dataclass
class MocoConfig:
    """MoCo v2 key encoder and queue."""

    queue_size: int = 65536
    momentum: float = 0.999
    shuffle_bn: bool = True  #: shuffle keys across processes under DDP (no effect on one device)


@dataclass
class MixCoConfig:
    """MixCo semi-positives (SimCLR and MoCo v2)."""

    enabled: bool = False
    beta: float = 1.0  #: weight of the mix term (SimCLR: of the mean of the two per-view terms)
    tau_mix: float = 0.05  #: temperature of the mix term
    lambda_dist: str = "uniform"  #: uniform (MixCo) | beta
    lambda_alpha: float = 1.0  #: Beta(alpha, alpha) parameter when lambda_dist is beta

    def __post_init__(self) -> None:
        _choice("mixco.lambda_dist", self.lambda_dist, LAMBDA_DISTRIBUTIONS)


@dataclass
class SelfConConfig:
    """SelfCon multi-exit network."""

    exits: list[int] = field(default_factory=lambda: [2])  #: exits after these stages (1..3)
    subnet: str = "fc"  #: fc | small | same
    #: > 0: SupCon on the backbone only + alpha * SelfCon with sub-network anchors (SelfCon-S*/M*)
    alpha: float = 0.0

    def __post_init__(self) -> None:
        _choice("selfcon.subnet", self.subnet, SUBNETS)
        if not self.exits or any(e not in (1, 2, 3) for e in self.exits) or len(set(self.exits)) != len(self.exits):
            raise ValueError(f"selfcon.exits must be distinct stages among 1, 2, 3, got {self.exits}")


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule of the pretraining (see vision_ssl.schedules)."""

    optimizer: str = "sgd"  #: sgd | adam (CD-FSL BYOL without source labels; momentum and nesterov unused)
    lr: float = 0.5  #: for the configured data.batch_size x devices
    momentum: float = 0.9
    weight_decay: float = 1.0e-4
    nesterov: bool = False
    schedule: str = "cosine"
    eta_min_ratio: float = 0.0  #: cosine floor = lr * eta_min_ratio
    warmup_epochs: int = 0
    warmup: str = "linear"  #: linear (from warmup_from) | constant
    warmup_from: float = 0.01
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _choice("optim.optimizer", self.optimizer, OPTIMIZERS)
        _choice("optim.schedule", self.schedule, SCHEDULES)
        _choice("optim.warmup", self.warmup, WARMUPS)


@dataclass
class BYOLConfig:
    """BYOL projector / predictor (both ``Linear -> BN -> ReLU -> Linear``) and the EMA target."""

    hidden_dim: int = 4096
    out_dim: int = 256
    ema: float = 0.99  #: constant target momentum (CD-FSL; no cosine ramp)


@dataclass
class CDFSLConfig:
    """Cross-domain few-shot pretraining schemes (methods sl and msl, two-stage initialisation).

    Method ``sl`` trains on ``data.*`` (the labeled source). Method ``msl`` reads its unlabeled
    target views from ``data.*`` and its labeled source from ``source_*``.
    """

    #: classes of the source classifier; 0: counted from the source dataset when the model is built
    num_classes: int = 0
    ssl: str = "simclr"  #: msl: self-supervised term on the target views, simclr | byol
    #: msl: loss = (1 - gamma) CE(source) + gamma SSL(target). The official scripts tag their runs
    #: "gamma78" without passing --gamma (their code default is 0.5); 7/8 is the paper's value.
    gamma: float = 0.875
    #: constant: gamma; linear: gamma_t = t / (T - 1) over the optimizer steps t = 0..T-1 of the run
    gamma_schedule: str = "constant"
    source_dataset: str = "imagefolder"  #: msl: a name of vision_ssl.data.DATASETS
    source_root: str = ""
    source_split: str = "train"
    source_batch_size: int = 64  #: msl: labeled source images per step (per device)
    #: two-stage schemes: checkpoint of the first stage; its backbone (and classifier, when both
    #: have one) initialise this run, with a fresh optimizer and schedule
    init_from: str = ""

    def __post_init__(self) -> None:
        _choice("cdfsl.ssl", self.ssl, SSL_LOSSES)
        _choice("cdfsl.gamma_schedule", self.gamma_schedule, GAMMA_SCHEDULES)
        _choice("cdfsl.source_dataset", self.source_dataset, DATASETS)
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"cdfsl.gamma must lie in [0, 1], got {self.gamma}")
        if self.num_classes < 0:
            raise ValueError(f"cdfsl.num_classes must be >= 0 (0: from the dataset), got {self.num_classes}")


@dataclass
class TrainerConfig(CoreTrainerConfig):
    """Lightning trainer settings of the pretraining (``seed`` is the experiment's top-level
    one), and the kNN monitor."""

    precision: str = "32-true"  #: "16-mixed" on GPUs for the published runs
    ckpt_every_n_epochs: int = 10  #: kept periodic checkpoints (last.ckpt is written every epoch)
    knn_every_n_epochs: int = 10  #: kNN monitor interval (0: off)
    knn_k: int = 200
    knn_temperature: float = 0.07


@dataclass
class LinearConfig:
    """Linear evaluation: frozen backbone in eval mode, a linear classifier per feature."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 3.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    milestones: list[int] = field(default_factory=lambda: [60, 80])
    gamma: float = 0.1
    train_aug: str = "rrc_flip"
    test_aug: str = "plain"
    #: features to probe: backbone (pooled trunk) and, for SelfCon, subnet (last exit); with
    #: both, the ensemble (mean of the two classifiers' logits) is reported too
    features: list[str] = field(default_factory=lambda: ["backbone"])
    precision: str = "32-true"

    def __post_init__(self) -> None:
        _choice("linear.train_aug", self.train_aug, AUGMENTATIONS)
        _choice("linear.test_aug", self.test_aug, AUGMENTATIONS)
        for f in self.features:
            _choice("linear.features", f, FEATURES)


@dataclass
class ExperimentConfig(YamlConfig):
    """One experiment: a pretraining method and its linear evaluation (one seed)."""

    method: str = "selfcon"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    contrast: ContrastConfig = field(default_factory=ContrastConfig)
    moco: MocoConfig = field(default_factory=MocoConfig)
    mixco: MixCoConfig = field(default_factory=MixCoConfig)
    selfcon: SelfConConfig = field(default_factory=SelfConConfig)
    byol: BYOLConfig = field(default_factory=BYOLConfig)
    cdfsl: CDFSLConfig = field(default_factory=CDFSLConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)

    def __post_init__(self) -> None:
        _choice("method", self.method, METHODS)
        if self.mixco.enabled and self.method not in ("simclr", "mocov2"):
            raise ValueError(f"mixco.enabled applies to simclr and mocov2, not {self.method!r}")
        if self.model.single_pass is not None and self.method not in ("simclr", "byol", "msl"):
            raise ValueError(f"model.single_pass applies to simclr, byol and msl, not {self.method!r}; leave it null")
        if self.method in ("simclr", "mocov2", "byol", "msl") and self.data.num_views != 2:
            raise ValueError(f"{self.method} needs data.num_views: 2")
        if "subnet" in self.linear.features and self.method != "selfcon":
            raise ValueError("linear.features 'subnet' exists only for method selfcon")
        if self.method == "sl" and self.data.num_views != 1:
            raise ValueError("sl trains on one view per source image: set data.num_views: 1")


#: module-level names of the loaders (``load_config(path, overrides)`` etc.)
load_config = ExperimentConfig.load
config_from_dict = ExperimentConfig.from_dict
