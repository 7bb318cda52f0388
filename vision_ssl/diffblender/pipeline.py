"""Multimodal text-to-image sampling with DiffBlender, following diffusers pipeline conventions.

Loading and saving:

* ``DiffBlenderPipeline.from_pretrained(base, adapter="adapter.safetensors", torch_dtype=...)``:
  a Stable-Diffusion-layout folder (or hub id) plus an adapter file (``save_adapter``, training);
* ``DiffBlenderPipeline.from_official("checkpoint_latest.pth", "stable-diffusion-v1-4")``: the
  official release (:mod:`vision_ssl.diffblender.official`) on a diffusers SD-1.4 folder;
* ``pipe.save_pretrained(folder)`` writes the diffusers layout with the adapter as one more
  component (``adapter/config.json`` + weights; ``model_index.json`` names its class by module
  path), which ``DiffBlenderPipeline.from_pretrained(folder)`` and diffusers'
  ``DiffusionPipeline.from_pretrained(folder, custom_pipeline=<this file>)`` both reload. A
  folder without an adapter (a plain SD base) or with an incomplete one is an error, never a
  fresh untrained adapter (that needs an explicit ``adapter_config=``).

``pipe(prompt, conditions=..., ...)`` samples with any subset of modalities. Each step batches
the chunks ``[uncond, cond, cond minus m for each m in mode_guidance]``: the unconditional chunk nulls the
text (negative prompt) and every token modality but keeps the image-form conditions; gate
schedules set the spatial, non-spatial and image scales per sampling step (reference section 3;
PLMS's extra warm-up evaluation takes step 0's scales, as in the official sampler). As the official
model does, each UNet evaluation encodes a new VAE posterior sample of every image-form condition
in every chunk (``resample_image_latents=False``: one sample per call, shared by all evaluations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, PNDMScheduler, SchedulerMixin
from diffusers.image_processor import VaeImageProcessor

from vision_ssl.diffblender.adapter import Conditions, DiffBlenderAdapter, EncodedConditions, GateScales, encode_text
from vision_ssl.diffblender.config import AdapterConfig
from vision_ssl.diffblender.guidance import Weight, combine_guidance, unconditional, without_modality
from vision_ssl.diffblender.official import OFFICIAL_NAMES, load_official_adapter
from vision_ssl.diffblender.schedule import evaluation_gate_schedule
from vision_ssl.diffblender.weights import load_adapter

ADAPTER = "adapter"  #: the adapter's component name (and subfolder) in a pipeline folder

Gate = tuple[float, float, float, float]


def load_scheduler(base: str, sampler: str | None = None) -> SchedulerMixin:
    """The scheduler of the SD folder / hub id ``base``: ``"pndm"`` (PLMS with ``skip_prk_steps``)
    or ``"ddim"`` built from its scheduler config (so the training beta schedule is kept), or, with
    ``sampler=None``, the scheduler class the folder names (as it was saved)."""
    config = PNDMScheduler.load_config(base, subfolder="scheduler")
    kinds = {"pndm": (PNDMScheduler, {"skip_prk_steps": True}), "ddim": (DDIMScheduler, {})}
    if sampler is None:
        saved = getattr(diffusers, str(config.get("_class_name")), None)
        if not (isinstance(saved, type) and issubclass(saved, SchedulerMixin)):
            raise ValueError(f"{base}/scheduler: unknown scheduler class {config.get('_class_name')!r}; pass "
                             f"sampler= one of {sorted(kinds)}")
        return saved.from_config(config)
    if sampler not in kinds:
        raise ValueError(f"sampler must be one of {sorted(kinds)} (or None: the folder's own), got {sampler!r}")
    scheduler_cls, extra = kinds[sampler]
    return scheduler_cls.from_config(config, **extra)


def load_base_components(base: str | Path, torch_dtype: torch.dtype | None = None,
                         sampler: str | None = None) -> dict[str, Any]:
    """``dict(unet, vae, text_encoder, tokenizer, scheduler)`` of a diffusers SD folder or hub id
    (``sampler``: see :func:`load_scheduler`)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    base = str(base)
    if Path(base).exists() and not (Path(base) / "unet").is_dir():
        raise FileNotFoundError(f"{base}: not a Stable Diffusion folder (expected unet/ vae/ text_encoder/ "
                                "tokenizer/ scheduler/); write one with save_tiny_base or point to a diffusers SD repo")
    scheduler = load_scheduler(base, sampler)
    return dict(
        unet=UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=torch_dtype),
        vae=AutoencoderKL.from_pretrained(base, subfolder="vae", torch_dtype=torch_dtype),
        text_encoder=CLIPTextModel.from_pretrained(base, subfolder="text_encoder", dtype=torch_dtype),
        tokenizer=CLIPTokenizer.from_pretrained(base, subfolder="tokenizer"),
        scheduler=scheduler,
    )


class DiffBlenderPipeline(DiffusionPipeline):
    """Stable Diffusion + a :class:`DiffBlenderAdapter` (attached to ``unet`` on construction)."""

    model_cpu_offload_seq = "text_encoder->adapter->unet->vae"

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, adapter: DiffBlenderAdapter) -> None:
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              scheduler=scheduler, adapter=adapter)
        adapter.attach(unet)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    @classmethod
    def from_pretrained(cls, base: str | Path, adapter: str | Path | DiffBlenderAdapter | None = None,
                        adapter_config: AdapterConfig | None = None, torch_dtype: torch.dtype | None = None,
                        sampler: str | None = None) -> DiffBlenderPipeline:
        """Load the SD folder/hub id ``base`` and an adapter: ``adapter`` (a file written by
        ``save_adapter``, or a module), else a fresh one from ``adapter_config``, else the one
        saved in ``base`` by :meth:`save_pretrained` (an error if ``base`` has none).
        ``sampler``: ``"pndm"``, ``"ddim"`` or None (the folder's own scheduler)."""
        parts = load_base_components(base, torch_dtype, sampler)
        if adapter is None and adapter_config is not None:
            adapter = DiffBlenderAdapter.from_unet(adapter_config, parts["unet"])
        elif adapter is None:
            adapter = cls._saved_adapter(str(base), torch_dtype)
        elif not isinstance(adapter, DiffBlenderAdapter):
            adapter = load_adapter(adapter, parts["unet"], attach=False)
        if torch_dtype is not None:
            adapter.to(dtype=torch_dtype)
        return cls(adapter=adapter, **parts)

    @staticmethod
    def _saved_adapter(base: str, torch_dtype: torch.dtype | None) -> DiffBlenderAdapter:
        """The adapter component of the pipeline folder ``base`` (strictly loaded)."""
        try:
            index = DiffusionPipeline.load_config(base)
        except OSError:
            index = {}
        if (index.get(ADAPTER) or [None])[0] is None:
            raise ValueError(f"{base}: this folder has no DiffBlender adapter (model_index.json lists none: a plain "
                             "Stable Diffusion base); pass adapter=ADAPTER_FILE (save_adapter or training output), "
                             "load the released model with DiffBlenderPipeline.from_official, or pass "
                             "adapter_config=... for a fresh, untrained adapter")
        try:
            return DiffBlenderAdapter.from_pretrained(base, subfolder=ADAPTER, torch_dtype=torch_dtype)
        except OSError as err:
            raise FileNotFoundError(f"{base}: model_index.json lists an adapter but {ADAPTER}/ is missing or "
                                    f"incomplete ({err}); write the folder again with save_pretrained") from err

    @classmethod
    def from_official(cls, checkpoint: str | Path, sd_folder: str | Path, trust: bool = False,
                      torch_dtype: torch.dtype | None = None, sampler: str | None = None,
                      names: Mapping[str, str] = OFFICIAL_NAMES) -> DiffBlenderPipeline:
        """The official DiffBlender release ``checkpoint`` (``checkpoint_latest.pth``) on the
        diffusers Stable Diffusion 1.4 folder ``sd_folder``. The checkpoint is read without running
        code from it unless ``trust=True`` (only for a file from a source you trust); ``names``
        renames official modalities (default ``color_palette`` -> ``color``, ``image_embedding`` ->
        ``style``). See :mod:`vision_ssl.diffblender.official`."""
        parts = load_base_components(sd_folder, torch_dtype, sampler)
        adapter = load_official_adapter(checkpoint, parts["unet"], trust=trust, names=names, attach=False)
        if torch_dtype is not None:
            adapter.to(dtype=torch_dtype)
        return cls(adapter=adapter, **parts)

    def _prepare_latents(self, batch: int, height: int, width: int, generator, latents):
        shape = (batch, self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device, self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        return latents.to(self.device, self.unet.dtype) * self.scheduler.init_noise_sigma

    def _image_features(self, chunks: Sequence[Conditions],
                        generators: Sequence[torch.Generator] | None = None) -> list[torch.Tensor] | None:
        """Image-form features of the prepared ``chunks``, batched. With ``generators`` (one per
        chunk) each chunk's latents are first re-drawn from their posteriors, independently per
        chunk as the official sampler's separate conditional and unconditional UNet calls draw them."""
        adapter = self.adapter
        if generators is not None:
            chunks = [adapter.resample(c, g) for c, g in zip(chunks, generators)]
        return EncodedConditions.cat([EncodedConditions(image=adapter.encode_image(c)) for c in chunks]).image

    @staticmethod
    def _chunk_generators(generator: torch.Generator | None, roles: Sequence[int]) -> list[torch.Generator]:
        """One generator per chunk, seeded from one draw of ``generator`` plus the chunk's role
        (0 uncond, 1 cond, 2 + j the j-th mode-nulled chunk): adding a mode-guidance chunk leaves
        the other chunks' posterior samples unchanged, so ``w_m = 0`` stays plain guidance."""
        device = generator.device if generator is not None else torch.device("cpu")
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=device))
        return [torch.Generator(device).manual_seed(seed + role) for role in roles]

    @torch.no_grad()
    def __call__(self, prompt: str | Sequence[str], conditions: Conditions | None = None, negative_prompt: str = "",
                 num_inference_steps: int = 50, guidance_scale: float = 5.0,
                 mode_guidance: Mapping[str, Weight] | None = None,
                 gate_spatial: Gate = (0.3, 0.0, 0.7, 1.0), gate_nonspatial: Gate = (0.3, 0.0, 0.7, 1.0),
                 gate_image: Gate = (1.0, 0.0, 0.0, 0.7), generator: torch.Generator | None = None,
                 height: int | None = None, width: int | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True, resample_image_latents: bool = True):
        """Sample images for ``prompt`` under ``conditions`` (raw-condition contract; any subset).

        ``mode_guidance`` maps a given modality to ``w_m`` (a float or one per sample; negative
        weakens it). ``gate_*`` are ``(a0, a1, a2, scale)`` schedules over the
        ``num_inference_steps`` steps. ``resample_image_latents``: a new posterior sample of the
        image-form conditions at every UNet evaluation (official) or one per call (False; only
        matters with ``adapter.adapter_config.posterior="sample"``). ``output_type``: ``"pil"``, ``"np"``,
        ``"pt"`` or ``"latent"``. Returns ``ImagePipelineOutput(images)`` (or a tuple).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        n = len(prompts)
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        modes = dict(mode_guidance or {})
        adapter = self.adapter
        frozen = dict(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                      image_size=(height, width), generator=generator)

        conditions = adapter.prepare(conditions, n, **frozen)
        text_c = encode_text(self.text_encoder, self.tokenizer, prompts)
        chunks, roles = [conditions], [1]
        texts = [text_c]
        use_uncond = guidance_scale != 1.0 or bool(modes)
        if use_uncond:
            chunks.insert(0, unconditional(conditions, adapter.adapter_config.names("image")))
            roles.insert(0, 0)
            texts.insert(0, encode_text(self.text_encoder, self.tokenizer, [negative_prompt] * n))
        for j, m in enumerate(modes):
            chunks.append(adapter.prepare(without_modality(conditions, m), n, **frozen))
            roles.append(2 + j)
            texts.append(text_c)
        tokens = EncodedConditions.cat([adapter.encode_tokens(c, n) for c in chunks])
        text = torch.cat(texts).to(self.unet.dtype)
        spec = adapter.adapter_config
        resample = resample_image_latents and spec.posterior == "sample" and bool(spec.names("image"))
        generators = self._chunk_generators(generator, roles) if resample else None
        image = None if resample else self._image_features(chunks)

        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        scales = [evaluation_gate_schedule(g, num_inference_steps, len(timesteps))
                  for g in (gate_spatial, gate_nonspatial, gate_image)]
        latents = self._prepare_latents(n, height, width, generator, latents)
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                if resample:
                    image = self._image_features(chunks, generators)
                encoded = EncodedConditions(tokens.spatial, tokens.nonspatial, image)
                inputs = self.scheduler.scale_model_input(torch.cat([latents] * len(chunks)), t)
                step_scales = GateScales(scales[0][i], scales[1][i], scales[2][i])
                eps = adapter.predict(self.unet, inputs, t, text, encoded, step_scales).chunk(len(chunks))
                if use_uncond:
                    eps = combine_guidance(eps[0], eps[1], guidance_scale, list(zip(eps[2:], modes.values())))
                else:
                    eps = eps[0]
                latents = self.scheduler.step(eps, t, latents).prev_sample
                bar.update()

        if output_type == "latent":
            images = latents
        else:
            decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample
            images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
