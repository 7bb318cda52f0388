"""Frozen speech SSL teachers (HuBERT, WavLM, wav2vec 2.0) on transformers.

* :func:`load_teacher` / :func:`save_teacher`: local transformers folder, original
  fairseq checkpoint (own converter, no fairseq install), or a named random-weight
  architecture (:data:`~audio_compress.teachers.configs.ARCHITECTURES`);
* :class:`FrozenTeacher`: always-eval, no-grad wrapper returning every layer's output,
  optional per-head attention maps and masked-input runs with the teacher's own mask
  embedding.
"""

from audio_compress.teachers.configs import ARCHITECTURES, architecture_names, get_config
from audio_compress.teachers.fairseq import (
    FairseqCheckpoint,
    FairseqConversionError,
    convert_fairseq_state_dict,
    fairseq_to_transformers_config,
    load_fairseq_checkpoint,
    parse_conv_feature_layers,
)
from audio_compress.teachers.teacher import FrozenTeacher, TeacherOutput, load_teacher, save_teacher, write_teacher

__all__ = [
    "ARCHITECTURES",
    "FairseqCheckpoint",
    "FairseqConversionError",
    "FrozenTeacher",
    "TeacherOutput",
    "architecture_names",
    "convert_fairseq_state_dict",
    "fairseq_to_transformers_config",
    "get_config",
    "load_fairseq_checkpoint",
    "load_teacher",
    "parse_conv_feature_layers",
    "save_teacher",
    "write_teacher",
]
