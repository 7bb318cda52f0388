"""DiffBlender (arXiv 2305.15194): multimodal conditioning of a frozen text-to-image diffusion
model, built on diffusers' ``UNet2DConditionModel`` without forking it.

Modules (lower never import higher): ``config`` (AdapterConfig, TrainConfig, TrainerConfig,
SampleConfig, DiffBlenderConfig) -> ``encoders`` (registry per category: image / spatial /
nonspatial), ``fusers`` (gated self-attention with a runtime scale), ``processors`` (attention
processors that install the fusers), ``schedule`` and ``guidance`` (pure functions) -> ``adapter``
(``DiffBlenderAdapter``: all trainable networks, a diffusers model; ``prepare`` / ``encode`` /
``predict``) -> ``weights`` (adapter-only safetensors, official-checkpoint key converter) ->
``official`` (the released ``checkpoint_latest.pth``, read safely) -> ``task`` (Lightning
training module) and ``pipeline`` (``DiffBlenderPipeline``: ``from_pretrained`` /
``save_pretrained`` / ``from_official``) -> the recipe steps behind
``python -m vision_ssl.bin.diffblender``: ``prepare`` (data check, condition cache),
``experiment`` (adapter training through the experiment runner), ``sampling`` and
``evaluation``; ``tiny`` builds a tiny random SD base for CPU tests and the mini recipe, which
``base_training`` trains. Nothing heavy is imported here.

Raw-condition contract (a missing modality key means absent, i.e. null for the whole batch)::

    {"sketch":   {"image": B x 3 x H x W in [0, 1] (strokes bright on dark), "mask": B},
     "depth":    {"image": B x 3 x H x W in [0, 1], "mask": B},
     "box":      {"boxes": B x 30 x 4 normalised xyxy,
                  "phrases": list[list[str]] (<= 30 per sample) or "phrase_embeds": B x 30 x D,
                  "mask": B x 30},
     "keypoint": {"points": B x 8 x 17 x 2 normalised xy, "mask": B x 8 x 17},
     "color":    {"vector": B x 180, "mask": B},
     "style":    {"vector": B x S (L2-normalised CLIP image embedding), "mask": B}}

Masks may be fractional: the encoders blend ``m x + (1 - m) null`` as the official ones do.
Image-form entries may also carry ``"latent"`` (the scaled VAE latent) once prepared, with the
posterior (``"posterior_mean"``, ``"posterior_std"``) the pipeline re-draws it from at every UNet
evaluation. Absent image-form modalities follow ``AdapterConfig.image_null``: ``"zero_image"`` (official: a black
image is encoded, a learned null signal) or ``"skip"`` (nothing is added: an identity).
"""
