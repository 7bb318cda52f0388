"""The style condition: the CLIP image embedding of a reference image, as DiffBlender uses it
(reference diffblender.md sections 1.1 and 6.1): ``CLIPVisionModelWithProjection(...).image_embeds``
divided by its L2 norm (CLIPModel normalises it; the vision-with-projection model does not).

The model and its image processor load from a local folder (for the published setting, a copy of
``openai/clip-vit-large-patch14``: 768-d embeddings); there is no hub access at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor


class StyleEncoder:
    """L2-normalised CLIP image embeddings of PIL images, from a local model folder."""

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu") -> None:
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no CLIP vision model here (config.json missing); save one with "
                                    "CLIPVisionModelWithProjection.save_pretrained and "
                                    "CLIPImageProcessor.save_pretrained (e.g. openai/clip-vit-large-patch14) and set "
                                    "data.style_model to that folder")
        self.processor = CLIPImageProcessor.from_pretrained(str(folder))
        self.model = CLIPVisionModelWithProjection.from_pretrained(str(folder)).to(device).eval()
        self.device = torch.device(device)

    @property
    def dim(self) -> int:
        """Width of the embeddings."""
        return self.model.config.projection_dim

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image]) -> Tensor:
        """``[len(images), dim]`` float32 embeddings of unit L2 norm (on the CPU)."""
        pixels = self.processor(images=[img.convert("RGB") for img in images], return_tensors="pt")["pixel_values"]
        embeds = self.model(pixel_values=pixels.to(self.device)).image_embeds
        return torch.nn.functional.normalize(embeds.float(), dim=-1).cpu()
