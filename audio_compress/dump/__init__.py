"""Teacher feature dump: run the teacher once over a data dir, store chosen layers in fp16.

Distillation with STaR or DistilHuBERT only needs the teacher's hidden states on clean audio, so
they can be computed once and read back at training time instead of running the teacher online
every epoch. :func:`dump_teacher_features` (:mod:`.writer`) writes the dump, :class:`TeacherDump`
(:mod:`.reader`) reads it, and :class:`DumpedSpeechDataset` (:mod:`.dataset`) pairs the audio of a
data dir with its stored targets (``data.dump_dir`` in the distillation config; see
:mod:`audio_compress.tasks.datamodule`). :mod:`.layout` holds what writer and reader share.

Why one utterance at a time
    Every utterance goes through the teacher **alone** (a batch of one, no padding). A padded
    batch would make the stored targets depend on which utterances happened to share the batch:
    HuBERT Base / wav2vec 2.0 Base normalise the first CNN block with a GroupNorm over the time
    axis, and that statistic is taken over the *padded* length, zeros included, so the features
    of a short utterance change with the length of its longest batch mate. Batch-of-one targets
    are exactly what the teacher computes for the utterance, and are reproducible.

Layout of ``out_dir``
    The dump is written in the sibling folder ``<out_dir>.partial`` and renamed to ``out_dir`` only
    once complete, so ``out_dir`` is either a finished dump or absent (a previous dump there is
    replaced only by a finished one); an interrupted run leaves its work in ``<out_dir>.partial``
    for the next run with the same arguments to resume.

    * ``dump_meta.json``: what is being dumped (layers, teacher, data dir, shard plan); written
      first, so an interrupted dump can be resumed and checked against the request.
    * ``shard_<index>.bin``: raw little-endian fp16, C order, shape ``(frames_in_shard, n_layers, D)``
      (the frames of one utterance are contiguous: reading one utterance is one slice). Written
      incrementally, one utterance after the other.
    * ``shard_<index>.json``: the shard's index (``utt_id -> [offset_frames, num_frames]``), written
      atomically only once the shard's ``.bin`` is complete and synced to disk; a shard counts as
      done only when its index exists, matches the plan and the ``.bin`` has the expected size.
    * ``index.json``: the whole dump (layers, hidden size, dtype, teacher, data dir, counts,
      shards, ``utt_id -> [shard, offset, frames]``), written atomically at the end, followed by
      the ``done`` marker (JSON: utterance and frame counts). The reader refuses a folder without
      both, naming it and saying to rerun the dump stage (stage 3 of the recipes).

Utterances are processed in sorted-id order and packed into shards in that order until a shard
holds ``shard_frames`` frames, so the shard assignment is deterministic and a re-run skips the
completed shards and redoes only the incomplete ones.

Loading
    A training batch never converts or transposes on the host: an item's targets are a view of
    the memory map, the collate copies each utterance's contiguous ``(T, n_layers, D)`` block
    into one fp16 batch tensor in that same layout (in shared memory inside a DataLoader
    worker), and :class:`DumpBatch` turns it into float32 per-layer targets on first use, on the
    device the batch was moved to. The values are exactly the stored fp16 ones.

Cropping
    :class:`DumpedSpeechDataset` can crop training utterances (``data.crop_samples``) at frame
    boundaries and slice the stored targets to the same frames; see its docstring for how far the
    teacher's context makes such targets differ from an online teacher run on the crop.
"""

from audio_compress.dump.dataset import DumpBatch, DumpedSpeechDataset, frame_span
from audio_compress.dump.layout import (
                                        BYTES_PER_VALUE,
                                        DEFAULT_SHARD_FRAMES,
                                        DISK_MARGIN,
                                        DONE_FILE,
                                        DTYPE,
                                        FORMAT_VERSION,
                                        INDEX_FILE,
                                        META_FILE,
                                        STAGING_SUFFIX,
                                        DumpError,
                                        expected_feature_bytes,
                                        plan_shards,
                                        staging_dir,
)
from audio_compress.dump.reader import TeacherDump
from audio_compress.dump.writer import dump_teacher_features, teacher_identity

__all__ = [
    "BYTES_PER_VALUE",
    "DEFAULT_SHARD_FRAMES",
    "DISK_MARGIN",
    "DONE_FILE",
    "DTYPE",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "META_FILE",
    "STAGING_SUFFIX",
    "DumpError",
    "DumpBatch",
    "DumpedSpeechDataset",
    "TeacherDump",
    "dump_teacher_features",
    "expected_feature_bytes",
    "frame_span",
    "plan_shards",
    "staging_dir",
    "teacher_identity",
]
