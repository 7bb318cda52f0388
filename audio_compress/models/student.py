"""The configurable student model (STaRHuBERT, ARMHuBERT, MaskHuBERT, DistilHuBERT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audio_compress.frames import RECEPTIVE_FIELD, frame_padding_mask
from audio_compress.models.cnn import ConvFeatureExtractor
from audio_compress.models.config import StudentConfig, get_student_config
from audio_compress.models.pretrained import PretrainedStudentMixin
from audio_compress.models.transformer import TransformerEncoder, scale_grad


@dataclass
class StudentOutput:
    """Everything one student forward pass produces.

    Attributes:
        features: (B, T, d) CNN features after the feature LayerNorm and projection,
            before input dropout and masking (DistilHuBERT's upstream ``hidden_states[0]``).
        pre_transformer: (B, T, d) X^0, the Transformer input after the positional conv
            and encoder LayerNorm, before dropout (STaR's intra-layer loss needs it).
        hidden_states: the L layer outputs (B, T, d); with layer-gradient scaling these
            are the distillation copies (same values, scaled gradient).
        padding_mask: (B, T) bool, True at padded frames (all False without a mask).
        projections: L tensors (B, T, proj_dim) from the layer-wise heads, or None.
        predictions: (B, N, T, pred_dim) DistilHuBERT-style predictions, or None.
        attentions: per layer (B, h, T, T) attention probabilities actually applied
            (reused maps included), only with ``output_attentions=True``.
    """

    features: Tensor
    pre_transformer: Tensor
    hidden_states: list[Tensor]
    padding_mask: Tensor
    projections: list[Tensor] | None = None
    predictions: Tensor | None = None
    attentions: list[Tensor] | None = None


class MaskEmbedding(nn.Module):
    """Learned vector written over the features of masked frames."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim).uniform_())

    def forward(self, x: Tensor, frame_mask: Tensor) -> Tensor:
        """Replace frames of ``x`` (B, T, d) where ``frame_mask`` (B, T) is True."""
        return torch.where(frame_mask.unsqueeze(-1), self.weight.to(x.dtype), x)


class PredictionHead(nn.Module):
    """DistilHuBERT head: Linear(d, p*N), GELU, then N separate Linear(p, p)."""

    def __init__(self, embed_dim: int, pred_dim: int, num_targets: int):
        super().__init__()
        self.pred_dim = pred_dim
        self.num_targets = num_targets
        self.expand = nn.Linear(embed_dim, pred_dim * num_targets)
        self.split = nn.ModuleList(nn.Linear(pred_dim, pred_dim) for _ in range(num_targets))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, d) -> (B, N, T, p)."""
        hidden = F.gelu(self.expand(x)).unflatten(-1, (self.num_targets, self.pred_dim))
        return torch.stack([linear(hidden[..., n, :]) for n, linear in enumerate(self.split)], dim=1)


class StudentModel(PretrainedStudentMixin, nn.Module):
    """CNN feature encoder + post-LN Transformer with optional reuse, masking and heads.

    Pipeline: CNN -> (feature LayerNorm) -> (Linear to d) -> input dropout ->
    (mask embedding at ``frame_mask``) -> zero padded frames -> ``LN(x + pos_conv(x))``
    -> dropout -> L layers -> (per-layer projection heads) and (prediction head on the
    last layer). ``save_pretrained`` / ``from_pretrained`` write and read a shareable folder
    (:mod:`audio_compress.models.pretrained`).
    """

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.feature_extractor = ConvFeatureExtractor(config.conv_layers)
        if config.feature_grad_mult == 0:
            # frozen: optimisers and DDP leave these parameters out (see forward)
            self.feature_extractor.requires_grad_(False)
        self.feature_layer_norm = nn.LayerNorm(config.cnn_dim) if config.feature_layer_norm else None
        self.post_extract_proj = nn.Linear(config.cnn_dim, d) if config.cnn_dim != d else None
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.mask_emb = MaskEmbedding(d) if config.mask_emb else None
        self.encoder = TransformerEncoder(
            d, config.ffn_dim, config.num_heads, config.reuse_pattern, config.dropout, config.attention_dropout,
            config.activation_dropout, config.pos_conv_kernel, config.pos_conv_groups,
            layer_grad_scale=config.layer_grad_scale, release_compat=config.arm_release_compat,
        )
        self.proj_heads = (
            nn.ModuleList(nn.Linear(d, config.proj_dim) for _ in range(config.num_layers))
            if config.proj_dim is not None else None
        )
        self.pred_head = (
            PredictionHead(d, config.pred_dim or d, len(config.pred_layers))
            if config.pred_layers is not None else None
        )

    def forward(self, wavs: Tensor, padding_mask: Tensor | None = None, frame_mask: Tensor | None = None,
                output_attentions: bool = False) -> StudentOutput:
        """Run the student.

        Args:
            wavs: (B, L) float waveforms at 16 kHz, L >= 400.
            padding_mask: (B, L) bool, True at padded samples.
            frame_mask: (B, T) bool, True at frames replaced by the mask embedding
                (needs ``config.mask_emb``).
            output_attentions: also return every layer's attention probabilities.
        """
        if wavs.dim() != 2:
            raise ValueError(f"wavs must be (B, L), got shape {tuple(wavs.shape)}")
        if wavs.shape[1] < RECEPTIVE_FIELD:
            raise ValueError(f"wavs have {wavs.shape[1]} samples; at least {RECEPTIVE_FIELD} are needed for one frame")
        if padding_mask is not None and (padding_mask.shape != wavs.shape or padding_mask.dtype != torch.bool):
            raise ValueError("padding_mask must be a bool tensor shaped like wavs (True = padded)")

        if self.config.feature_grad_mult > 0:
            features = self.feature_extractor(wavs, padding_mask)
            if self.config.feature_grad_mult != 1.0:
                features = scale_grad(features, self.config.feature_grad_mult)
        else:
            # 0: the CNN is not trained (fairseq's rule): no graph, and no gradient, so AdamW's weight
            # decay leaves it as it is too (a zero gradient would still be decayed)
            with torch.no_grad():
                features = self.feature_extractor(wavs, padding_mask)
        features = features.transpose(1, 2)
        batch, frames, _ = features.shape
        if padding_mask is None:
            frame_padding = torch.zeros(batch, frames, dtype=torch.bool, device=wavs.device)
        else:
            frame_padding = frame_padding_mask(padding_mask, frames)
        if self.feature_layer_norm is not None:
            features = self.feature_layer_norm(features)
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)

        x = self.input_dropout(features)
        if frame_mask is not None:
            if self.mask_emb is None:
                raise ValueError(f"student {self.config.name!r} has no mask embedding (config.mask_emb=False)")
            if frame_mask.shape != (batch, frames) or frame_mask.dtype != torch.bool:
                raise ValueError(f"frame_mask must be a bool tensor of shape {(batch, frames)}")
            x = self.mask_emb(x, frame_mask)

        encoded = self.encoder(x, frame_padding if padding_mask is not None else None, output_attentions)
        projections = None
        if self.proj_heads is not None:
            projections = [head(h) for head, h in zip(self.proj_heads, encoded.hidden_states)]
        predictions = self.pred_head(encoded.hidden_states[-1]) if self.pred_head is not None else None
        return StudentOutput(
            features=features,
            pre_transformer=encoded.pre_transformer,
            hidden_states=encoded.hidden_states,
            padding_mask=frame_padding,
            projections=projections,
            predictions=predictions,
            attentions=encoded.attentions,
        )

    def upstream_hidden_states(self, output: StudentOutput) -> list[Tensor]:
        """The tensors the s3prl upstream exposes as ``hidden_states`` (all B x T x D).

        Chosen by ``config.upstream_outputs``: ``"layers"`` gives the L layer outputs
        (STaR), ``"projections"`` the L projection-head outputs (ARMHuBERT, MaskHuBERT),
        ``"distiller"`` the projected CNN features, the L layer outputs and the N head
        predictions (DistilHuBERT: 1 + 2 + 3 = 6). In every case the last element is the
        upstream's ``last_hidden_state``.
        """
        kind = self.config.upstream_outputs
        if kind == "layers":
            return list(output.hidden_states)
        if kind == "projections":
            return list(output.projections)
        return [output.features, *output.hidden_states, *output.predictions.unbind(dim=1)]


def build_student(name: str, **overrides: Any) -> StudentModel:
    """Build the registered student ``name`` (see ``list_students()``) with config overrides."""
    return StudentModel(get_student_config(name, **overrides))


