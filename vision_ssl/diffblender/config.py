"""Configuration of DiffBlender: the adapter architecture, its training, and sampling.

The YAML files of the recipes mirror these dataclasses (built with
:func:`compact_ssl.config.load_yaml_config`; unknown keys are errors): ``train:`` holds the
method's hyperparameters, ``trainer:`` the Lightning settings shared with every entry point. Defaults are the
full SD-1.x setting of reference diffblender.md sections 1-3; values the paper does not give
(training hyperparameters, condition-dropout rates) are marked as our choice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from compact_ssl.config import YamlConfig
from compact_ssl.training import TrainerConfig as CoreTrainerConfig
from vision_ssl.diffblender.data.config import DataConfig

CATEGORIES = ("image", "spatial", "nonspatial")
IMAGE_NULLS = ("zero_image", "skip")
POSTERIORS = ("sample", "mode")


@dataclass
class ModalitySpec:
    """One conditioning modality: the key in the raw-condition dict, its category and encoder."""

    category: str  #: one of CATEGORIES
    encoder: str  #: an encoder registered for that category (vision_ssl.diffblender.encoders)
    in_dim: int = 0  #: input width of vector modalities (colour palette 180, CLIP style 768)
    #: vector encoders' official input switches (values of the release unknown, so off by default):
    #: Fourier frequencies per element (0: the raw vector), their base, and an input multiplier
    fourier_freqs: int = 0
    temperature: float = 100.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"modality category must be one of {CATEGORIES}, got {self.category!r}")
        if self.fourier_freqs < 0 or self.temperature <= 0:
            raise ValueError(f"modality fourier_freqs must be >= 0 and temperature > 0, got "
                             f"{self.fourier_freqs} and {self.temperature}")


def default_modalities() -> dict[str, ModalitySpec]:
    """The six modalities of the released model, in the official token order."""
    return {
        "sketch": ModalitySpec("image", "latent_adapter"),
        "depth": ModalitySpec("image", "latent_adapter"),
        "box": ModalitySpec("spatial", "box"),
        "keypoint": ModalitySpec("spatial", "keypoint"),
        "color": ModalitySpec("nonspatial", "vector", in_dim=180),
        "style": ModalitySpec("nonspatial", "vector", in_dim=768),
    }


@dataclass
class AdapterConfig:
    """Architecture of the trainable DiffBlender networks (encoders + fusers)."""

    #: name -> spec (a ModalitySpec or a mapping with its fields); order = token order
    modalities: dict[str, Any] = field(default_factory=default_modalities)
    token_dim: int = 768  #: width of spatial/non-spatial tokens (SD-1.x: 768)
    text_dim: int = 768  #: width of box phrase embeddings (the text encoder's pooled output)
    token_hidden: int = 512  #: hidden width of the token MLPs
    fourier_freqs: int = 8  #: Fourier frequencies of box / keypoint coordinates
    max_boxes: int = 30
    max_persons: int = 8
    num_keypoints: int = 17
    vector_norm: bool = False  #: LayerNorm in the vector MLPs (official switch; value unknown)
    latent_channels: int = 4  #: VAE latent channels fed to the image-form encoders
    image_channels: list[int] = field(default_factory=lambda: [320, 640, 1280, 1280])  #: = UNet block_out_channels
    nums_rb: int = 3  #: residual blocks per image-encoder level (inferred from the checkpoint size)
    use_conv: bool = True  #: strided-conv (True) or average-pool (False) downsampling in the image encoder
    #: absent / masked image-form modality: "zero_image" (official: a black image is VAE-encoded
    #: and encoded, a learned null signal) or "skip" (its features are zero: an identity)
    image_null: str = "zero_image"
    posterior: str = "sample"  #: VAE posterior for image conditions: "sample" (official) or "mode"
    vae_scale: float = 0.18215  #: latent scale factor applied after the VAE encoder

    def __post_init__(self) -> None:
        self.modalities = {
            name: spec if isinstance(spec, ModalitySpec) else ModalitySpec(**spec)
            for name, spec in dict(self.modalities).items()
        }
        self.image_channels = [int(c) for c in self.image_channels]
        if self.image_null not in IMAGE_NULLS:
            raise ValueError(f"adapter.image_null must be one of {IMAGE_NULLS}, got {self.image_null!r}")
        if self.posterior not in POSTERIORS:
            raise ValueError(f"adapter.posterior must be one of {POSTERIORS}, got {self.posterior!r}")

    def names(self, category: str) -> list[str]:
        """Modality names of ``category`` in config order."""
        return [name for name, spec in self.modalities.items() if spec.category == category]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _gate(value: Any, where: str) -> tuple[float, float, float, float]:
    gate = tuple(float(v) for v in value)
    if len(gate) != 4 or abs(sum(gate[:3]) - 1.0) > 1e-6 or min(gate[:3]) < 0:
        raise ValueError(f"{where} must be (a0, a1, a2, scale) with non-negative a0 + a1 + a2 = 1, got {value!r}")
    return gate


TIMESTEP_SAMPLINGS = ("uniform", "cubic")


@dataclass
class TrainerConfig(CoreTrainerConfig):
    """Lightning trainer of the adapter training (the ``trainer:`` section; multi-GPU: ``devices`` /
    ``num_nodes``, Lightning starts DDP or joins torchrun / SLURM)."""

    max_steps: int = 500000
    max_epochs: int = -1
    precision: str = "bf16-mixed"
    ckpt_every_n_steps: int = 1000  #: last.ckpt is rewritten this often (and at every epoch end)
    grad_clip: float = 1.0  #: gradient-norm clipping (0: none)
    seed: int = 0  #: seeds everything (the runner's seed key); validation noise is seeded by seed + batch index


@dataclass
class TrainConfig:
    """Training of the adapter on a frozen base (our choices where the paper is silent)."""

    lr: float = 5.0e-5  #: GLIGEN trainer default (DiffBlender's own value is unknown)
    weight_decay: float = 0.0  #: 0 keeps untouched zero-init gates exactly zero
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 10000  #: linear warm-up, then constant
    text_dropout: float = 0.1  #: probability of an empty caption (classifier-free guidance)
    #: per-modality probability of nulling a sample's condition (our choice: 0.5 each)
    dropout: dict[str, float] = field(default_factory=lambda: {
        "sketch": 0.5, "depth": 0.5, "box": 0.5, "keypoint": 0.5, "color": 0.5, "style": 0.5})
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"  #: SD's schedule (ldm "linear")
    #: training timesteps: "uniform" (GLIGEN) or "cubic", t = (1 - u^3) T, T2I-Adapter's emphasis on
    #: the early, high-noise steps where the layout is decided
    timestep_sampling: str = "uniform"

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        if self.timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ValueError(f"train.timestep_sampling must be one of {TIMESTEP_SAMPLINGS}, "
                             f"got {self.timestep_sampling!r}")
        for name, p in self.dropout.items():
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"train.dropout.{name} must be a probability, got {p!r}")


@dataclass
class SampleConfig:
    """Sampling defaults of the official inference script (reference section 3)."""

    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    sampler: str = "pndm"  #: "pndm" (PLMS, skip_prk_steps) or "ddim"
    negative_prompt: str = ""
    #: gate schedules (a0, a1, a2, scale); the image one's scale is the image-form residual scale
    gate_spatial: tuple[float, float, float, float] = (0.3, 0.0, 0.7, 1.0)
    gate_nonspatial: tuple[float, float, float, float] = (0.3, 0.0, 0.7, 1.0)
    gate_image: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.7)
    mode_guidance: dict[str, float] = field(default_factory=dict)  #: modality -> w_m (0: plain CFG)
    #: a new VAE posterior sample of the sketch / depth at every UNet evaluation (official) or one
    #: per image (false); only with adapter.posterior: sample
    resample_image_latents: bool = True
    height: int = 512
    width: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("gate_spatial", "gate_nonspatial", "gate_image"):
            setattr(self, name, _gate(getattr(self, name), f"sample.{name}"))
        if self.sampler not in ("pndm", "ddim"):
            raise ValueError(f"sample.sampler must be 'pndm' or 'ddim', got {self.sampler!r}")


@dataclass
class DiffBlenderConfig(YamlConfig):
    """One DiffBlender experiment: base model, data, adapter, training, trainer and sampling."""

    base: str = ""  #: a diffusers Stable Diffusion folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/)
    data: DataConfig = field(default_factory=DataConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def tiny_adapter_config(**overrides: Any) -> AdapterConfig:
    """The adapter scaled to the tiny base of :mod:`vision_ssl.diffblender.tiny` (section 7:
    token dim = cross_attention_dim, image channels = block_out_channels)."""
    values: dict[str, Any] = dict(
        token_dim=32, text_dim=32, token_hidden=64, image_channels=[32, 64], nums_rb=1,
        modalities={**default_modalities(), "style": ModalitySpec("nonspatial", "vector", in_dim=32)},
    )
    values.update(overrides)
    return AdapterConfig(**values)


#: ``load_config(path, overrides)``: the config from YAML (or defaults) plus ``key.sub=value`` overrides
load_config = DiffBlenderConfig.load

