"""Student models of the STaR / ARMHuBERT / DistilHuBERT family (timm-style registry).

``build_student(name)`` builds a registered architecture (``list_students()``);
``save_student`` writes this toolkit's standalone checkpoints; ``load_student`` reads them and
the released checkpoints as published (STaR / ARMHuBERT Lightning files with their YAML, s3prl
DistilHuBERT files), see :mod:`audio_compress.models.released`.
"""

from audio_compress.models.checkpoint import read_student_checkpoint, save_student
from audio_compress.models.config import StudentConfig, get_student_config, list_students
from audio_compress.models.released import LoadedStudent, load_student, open_student
from audio_compress.models.student import StudentModel, StudentOutput, build_student
from compact_ssl.nn import count_parameters

__all__ = [
    "LoadedStudent",
    "StudentConfig",
    "StudentModel",
    "StudentOutput",
    "build_student",
    "count_parameters",
    "get_student_config",
    "list_students",
    "load_student",
    "open_student",
    "read_student_checkpoint",
    "save_student",
]
