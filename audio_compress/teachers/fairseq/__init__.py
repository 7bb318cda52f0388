"""Original fairseq (and unilm WavLM) checkpoints -> transformers models, without fairseq.

fairseq 0.12.2 does not import on Python 3.11, so this package reads its checkpoint files with
:func:`compact_ssl.unpickle.load_untrusted` (fairseq classes become inert placeholders, code is
never run) and maps the parameter names itself:

* :mod:`.checkpoint`: :func:`load_fairseq_checkpoint` (state dict + model cfg of a file);
* :mod:`.config`: :func:`fairseq_to_transformers_config` (cfg fields, or shapes where missing);
* :mod:`.state_dict`: :func:`convert_fairseq_state_dict` (the name table) and
  :func:`build_model_from_fairseq`.

The inverse direction (transformers -> fairseq names, to write fixture checkpoints) lives with
the tests (``tests/fairseq_fixtures.py``): nothing in the toolkit writes fairseq files.
"""

from audio_compress.teachers.fairseq.checkpoint import (
                                                        FairseqCheckpoint,
                                                        FairseqConversionError,
                                                        load_fairseq_checkpoint,
)
from audio_compress.teachers.fairseq.config import (
                                                        DEFAULT_CONV_FEATURE_LAYERS,
                                                        detect_model_type,
                                                        fairseq_to_transformers_config,
                                                        parse_conv_feature_layers,
)
from audio_compress.teachers.fairseq.state_dict import (
                                                        IGNORED_PREFIXES,
                                                        build_model_from_fairseq,
                                                        convert_fairseq_state_dict,
)
from compact_ssl.unpickle import Placeholder, to_plain

__all__ = [
    "DEFAULT_CONV_FEATURE_LAYERS",
    "IGNORED_PREFIXES",
    "FairseqCheckpoint",
    "FairseqConversionError",
    "Placeholder",
    "build_model_from_fairseq",
    "convert_fairseq_state_dict",
    "detect_model_type",
    "fairseq_to_transformers_config",
    "load_fairseq_checkpoint",
    "parse_conv_feature_layers",
    "to_plain",
]
