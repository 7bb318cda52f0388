"""Lightning module of HuBERT-style masked prediction on a transformers ``HubertModel``.

Targets are computed from the waveforms (MFCC frames, or the previous iteration's hidden states, -> nearest
k-means centroid, a few milliseconds per utterance), so nothing but the codebook is stored on disk. Whole
utterances get the same targets every epoch, so they are kept in memory after their first batch; so is a
frozen front end's output per batch (:mod:`audio_compress.teachers.pretrain.kept_frontend`).
"""

from __future__ import annotations

from contextlib import nullcontext

import lightning as L
import torch
from torch import Tensor
from transformers import PreTrainedModel

from audio_compress.data.dataset import WaveBatch
from audio_compress.frames import frame_padding_mask, num_frames
from audio_compress.losses.armhubert import sample_span_mask
from audio_compress.tasks.distill import adamw_warmup_linear_decay
from audio_compress.teachers.configs import get_config, model_class_for
from audio_compress.teachers.context import init_delta_context
from audio_compress.teachers.filterbank import init_filterbank_frontend
from audio_compress.teachers.pretrain.config import PretrainConfig
from audio_compress.teachers.pretrain.head import PredictionHead, hubert_loss
from audio_compress.teachers.pretrain.kept_frontend import KeptFrontend
from audio_compress.teachers.pretrain.targets import ClusterTargets, layer_frames, mfcc_frames
from audio_compress.teachers.teacher import FrozenTeacher
from compact_ssl.training import check_finite_loss

#: ``targets`` value of padded frames
IGNORE = -100
#: most bytes of a frozen front end's output kept, on the model's device (the mini benchmark's teacher: about 30 MB)
KEPT_FRONTEND_BYTES = 2 << 30


def initial_model(config: PretrainConfig) -> PreTrainedModel:
    """The encoder that pretraining starts from: ``config.architecture`` (with its overrides) at random weights
    drawn from torch's global generator, its front end set to the filterbank and its Transformer's input to the
    deltas start when the config asks for them. The runner seeds that generator with ``trainer.seed`` right
    before it builds the task, so after ``torch.manual_seed(trainer.seed)`` this is the first iteration's
    starting point weight for weight (a later iteration loads the previous teacher first, which draws from the
    generator): the mini benchmark's random teacher."""
    hf_config = get_config(config.architecture, **config.architecture_overrides)
    model = model_class_for(hf_config)(hf_config)
    if config.frontend != "learned":
        init_filterbank_frontend(model, mel=config.mel_frontend)
    if config.positional_init != "random":
        init_delta_context(model, torch.Generator().manual_seed(config.trainer.seed), config.delta_order,
                           paired=config.paired_deltas)
    return model


class TeacherPretrainTask(L.LightningModule):
    """Encoder (``model``), prediction head and the k-means codebook (buffers, so checkpoints hold it).

    ``previous``: the previous HuBERT iteration's model, whose hidden state ``config.targets.layer`` the codebook
    clusters (frozen; a submodule, so checkpoints hold it too); ``None`` in the first iteration (MFCC targets).
    """

    def __init__(self, config: PretrainConfig, codebook: ClusterTargets, previous: FrozenTeacher | None = None):
        super().__init__()
        self.config = config
        self.save_hyperparameters({"config": config.to_dict()})
        self.model = initial_model(config)
        hf_config = self.model.config
        if config.freeze_frontend:
            # transformers' own freeze (HubertModel has no public one): besides requires_grad it clears the
            # encoder's flag that marks the wave as requiring grad in training, without which autograd still
            # records the frozen front end and its backward runs for a gradient nobody reads
            self.model.feature_extractor._freeze_parameters()
        # fixed batches (no crops) through a frozen front end give the same output every epoch
        self._frontend = (KeptFrontend(self.model.feature_extractor, KEPT_FRONTEND_BYTES)
                          if config.freeze_frontend and config.data.crop_samples is None else None)
        self.previous = previous
        self.head = PredictionHead(hf_config.hidden_size, config.proj_dim, codebook.num_clusters, config.temperature)
        for name, value in codebook.to_dict().items():
            self.register_buffer(f"codebook_{name}", value.clone())
        # the masks of training (its state is in every checkpoint, compact_ssl.training.state) and of
        # validation (reseeded at each validation, so that val_loss is comparable across steps)
        self._mask_generator = torch.Generator().manual_seed(config.trainer.seed)
        self._val_generator = torch.Generator()
        # (training, utt_id, samples) -> cluster ids, kept in the smallest integer type that holds them (HuBERT's
        # 500 clusters on 960 h: 0.3 GB); training and dev ids may repeat across the two dirs, hence the flag; a
        # cropped utterance differs per crop, so crops are not kept
        self._targets_kept: dict[tuple[bool, str, int], Tensor] | None = (
            {} if config.data.crop_samples is None else None)
        self._kept_dtype = torch.int16 if codebook.num_clusters <= torch.iinfo(torch.int16).max else torch.long

    @property
    def codebook(self) -> ClusterTargets:
        return ClusterTargets(self.codebook_mean, self.codebook_std, self.codebook_centroids)

    def frame_targets(self, batch: WaveBatch, frames: int) -> Tensor:
        """``(B, T)`` cluster ids of every valid frame, :data:`IGNORE` at padded ones."""
        targets = torch.full((len(batch), frames), IGNORE, dtype=torch.long, device=batch.wavs.device)
        for row, (utt_id, length) in enumerate(zip(batch.utt_ids, batch.lengths.tolist(), strict=True)):
            key = (self.training, utt_id, length)
            ids = self._targets_kept.get(key) if self._targets_kept is not None else None
            if ids is None:
                ids = self.utterance_targets(batch.wavs[row, :length])
                if self._targets_kept is not None:
                    self._targets_kept[key] = ids.to("cpu", self._kept_dtype)
            targets[row, : ids.shape[0]] = ids.to(targets.device)
        return targets

    def utterance_targets(self, wav: Tensor) -> Tensor:
        """``(T,)`` cluster ids of one unpadded waveform's frames."""
        feats = (layer_frames(self.previous, wav, self.config.targets.layer) if self.previous is not None
                 else mfcc_frames(wav.cpu(), self.config.targets.cmvn))
        return self.codebook.assign(feats.to(self.codebook_mean.device))

    def compute_loss(self, batch: WaveBatch, generator: torch.Generator) -> dict[str, Tensor]:
        frames = num_frames(batch.wavs.shape[1])
        pad = frame_padding_mask(batch.padding_mask, frames)
        mask = sample_span_mask((len(batch), frames), self.config.mask.mask_prob, self.config.mask.mask_length,
                                padding_mask=pad, min_masks=self.config.mask.min_masks, min_space=0,
                                generator=generator).to(pad.device)
        attention_mask = (~batch.padding_mask).long() if bool(batch.padding_mask.any()) else None
        kept = (self._frontend.batch((self.training, tuple(batch.utt_ids), batch.wavs.shape[1]))
                if self._frontend is not None else nullcontext())
        with kept:
            out = self.model(input_values=batch.wavs.masked_fill(batch.padding_mask, 0.0),
                             attention_mask=attention_mask, mask_time_indices=mask, return_dict=True)
        loss, stats = hubert_loss(self.head(out.last_hidden_state), self.frame_targets(batch, frames), mask, ~pad,
                                  self.config.unmasked_weight)
        return {"loss": loss, **stats, "masked_fraction": (mask & ~pad).sum() / (~pad).sum()}

    def training_step(self, batch: WaveBatch, batch_idx: int) -> Tensor:
        losses = self.compute_loss(batch, self._mask_generator)
        check_finite_loss(losses["loss"], self.global_step, f"batch {batch.utt_ids[:4]}...")
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=len(batch))
        self.log("loss", losses["loss"].detach(), prog_bar=True, logger=False, batch_size=len(batch))
        return losses["loss"]

    def on_validation_epoch_start(self) -> None:
        self._val_generator.manual_seed(self.config.trainer.seed + 1)

    def validation_step(self, batch: WaveBatch, batch_idx: int) -> None:
        losses = self.compute_loss(batch, self._val_generator)
        self.log("val_loss", losses["loss"], prog_bar=True, batch_size=len(batch))
        self.log("val/masked_acc", losses["masked_acc"], batch_size=len(batch))

    def configure_optimizers(self):
        return adamw_warmup_linear_decay(self.named_parameters(), self.config.optim,
                                         self.trainer.estimated_stepping_batches)
