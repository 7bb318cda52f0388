"""Configuration of a distillation run, read from the recipe's YAML (the single source of truth).

A YAML file mirrors :class:`DistillConfig`; unknown keys are errors (a typo must not silently
fall back to a default). ``key.sub=value`` overrides (from the command line) are applied on top.
:func:`check_distill_config` checks what can be checked without any model, data or dump (a
recipe's preflight, before hours of dumping), e.g. a method that cannot train from a feature dump.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audio_compress.frames import RECEPTIVE_FIELD
from audio_compress.methods import METHODS as _METHOD_REGISTRY
from audio_compress.methods import get_method
from compact_ssl.config import ConfigError, YamlConfig
from compact_ssl.training import TrainerConfig as CoreTrainerConfig

#: names of the distillation methods (:data:`audio_compress.methods.METHODS`)
METHODS = tuple(_METHOD_REGISTRY)
#: teacher parts besides its layers that ``init_from_teacher`` can copy (:func:`audio_compress.models.init_student_from_teacher`)
INIT_PARTS = ("conv", "projection", "pos_conv")


@dataclass
class DataConfig:
    """Where the data comes from and how it is batched."""

    train: str = "data/train"  #: Kaldi data dir for training
    dev: str = "data/dev_clean"  #: Kaldi data dir for validation
    max_batch_samples: int = 16000 * 200  #: padded samples per batch (per device)
    max_batch_size: int | None = None  #: optional cap on utterances per batch
    #: random crop of long training utterances (None: no crop); with a feature dump the crop starts
    #: on a frame boundary and the stored targets are sliced to its frames
    #: (:class:`~audio_compress.dump.DumpedSpeechDataset`). Dev utterances are never cropped.
    crop_samples: int | None = None
    num_workers: int = 4
    resample: bool = False  #: resample non-16 kHz audio instead of refusing it
    dump_dir: str | None = None  #: read teacher targets from a feature dump instead of running it
    dev_dump_dir: str | None = None  #: dump of the dev set (optional; else online teacher for dev)

    def __post_init__(self) -> None:
        if self.crop_samples is not None and self.crop_samples < RECEPTIVE_FIELD:
            raise ValueError(
                f"crop_samples={self.crop_samples} is below the {RECEPTIVE_FIELD}-sample receptive field of the "
                "CNN (a crop would have no frame); set it to at least that, or null for whole utterances"
            )


@dataclass
class OptimConfig:
    """AdamW with linear warmup then linear decay (s3prl's ``AdamW_with_schedule`` layout)."""

    lr: float = 5.0e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1.0e-6
    weight_decay: float = 0.01  #: applied to weights; biases and norms get 0
    warmup_proportion: float = 0.05
    grad_clip: float = 10.0


@dataclass
class LossConfig:
    """Loss options of every method (each method reads its own)."""

    # STaR
    normalize: str = "dim"
    layerwise_weight: float = 1.0
    intra_weight: float = 1.0
    attn_weight: float = 0.0
    # ARMHuBERT masking distillation
    mask_prob: float = 0.8
    mask_length: int = 10
    min_masks: int = 2
    last_weight: float = 1.0
    hint_weight: float = 0.1
    # DistilHuBERT
    cos_weight: float = 1.0


@dataclass
class TrainerConfig(CoreTrainerConfig):
    """Lightning trainer settings: step-based validation and checkpoints."""

    max_steps: int = -1  #: optimizer updates (-1: use max_epochs)
    precision: str = "bf16-mixed"
    val_every_n_steps: int = 2000  #: validation interval in training batches
    ckpt_every_n_steps: int = 5000  #: periodic checkpoint interval in optimizer steps
    keep_best: int = 3  #: best-on-dev checkpoints kept
    seed: int = 0


@dataclass
class DistillConfig(YamlConfig):
    """One distillation experiment."""

    method: str = "star"
    student: str = "starhubert"
    student_overrides: dict = field(default_factory=dict)
    teacher: str = "hubert_base"
    #: teacher hidden-state index for each student layer 1..L (None: 1:1 or evenly spaced)
    teacher_layers: list[int] | None = None
    #: copy the teacher's CNN, projection, positional conv and layers into the student before
    #: training (DistilHuBERT does this with teacher layers 1-2)
    init_from_teacher: bool = False
    #: teacher layers (1-based) copied into student layers 1..; None: 1, 2, ... up to the depth
    init_teacher_layers: list[int] | None = None
    #: the other parts init_from_teacher copies: ``conv`` (the CNN front end), ``projection`` and ``pos_conv``
    #: (the positional convolution); a student narrower than its teacher can take the CNN only
    init_teacher_parts: list[str] = field(default_factory=lambda: list(INIT_PARTS))
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {METHODS}")
        unknown = sorted(set(self.init_teacher_parts) - set(INIT_PARTS))
        if unknown:
            raise ValueError(f"init_teacher_parts: unknown parts {unknown}; choose from {list(INIT_PARTS)}")


#: module-level names of the loaders (``load_config(path, overrides)`` etc.)
load_config = DistillConfig.load


def check_distill_config(config: DistillConfig, use_dump: bool, where: str = "config") -> None:
    """Refuse a configuration that cannot train, before any teacher, data or dump exists.

    Meant for a recipe's preflight (and the dump stage), so that an incompatible combination
    fails in seconds instead of after hours of dumping. Checks that the student exists (with its
    ``student_overrides``), that the method can be built for it (``teacher_layers`` has one entry
    per student layer; DistilHuBERT needs a student with prediction heads) and, when teacher
    targets come from a feature dump (``use_dump``, or ``data.dump_dir`` / ``data.dev_dump_dir``
    set), that the method can use one (:meth:`~audio_compress.methods.DistillMethod.dump_refusal`:
    ARMHuBERT never can; STaR not with ``loss.attn_weight > 0``). ``data.crop_samples`` is
    compatible with a dump (frame-aligned crops). What needs the teacher itself (its depth and
    width) is checked when training starts.

    Args:
        config: the loaded config (types and unknown keys were checked by the loader).
        use_dump: the recipe will dump teacher features and train from them (``--use_dump true``).
        where: the config's file name, put in front of every message.

    Raises:
        ConfigError: naming the key at fault and what to change.
    """
    from audio_compress.models import get_student_config  # model code: only loaded when checking

    try:
        student = get_student_config(config.student, **config.student_overrides)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: student={config.student!r} / student_overrides: {err}") from err
    # the teacher's depth only picks default layers, which no check below reads: the student's
    # own depth stands in for it until the teacher exists
    try:
        method = get_method(config.method)(config, student, student.num_layers)
    except ValueError as err:  # the messages name the key (teacher_layers, the student's pred_layers)
        raise ConfigError(f"{where}: method={config.method}, student={config.student}: {err}") from err
    sources = []
    if use_dump:
        sources.append("use_dump=true")
    if config.data.dump_dir:
        sources.append(f"data.dump_dir={config.data.dump_dir}")
    if config.data.dev_dump_dir:
        sources.append(f"data.dev_dump_dir={config.data.dev_dump_dir}")
    reason = method.dump_refusal()
    if sources and reason is not None:
        raise ConfigError(
            f"{where}: {reason} (method={config.method}; a feature dump is requested by {', '.join(sources)}). "
            "Train with the online teacher (use_dump=false, data.dump_dir and data.dev_dump_dir null) or "
            "change the setting named above"
        )
