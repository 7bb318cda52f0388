"""Student models of the STaR / ARMHuBERT / DistilHuBERT family (timm-style registry).

``build_student(name)`` builds a registered architecture (``list_students()``);
``save_student`` / ``load_student`` write and read standalone checkpoints.
"""

from audio_compress.models.checkpoint import load_student, read_student_checkpoint, save_student
from audio_compress.models.config import StudentConfig, get_student_config, list_students
from audio_compress.models.student import StudentModel, StudentOutput, build_student
from compact_ssl.nn import count_parameters

__all__ = [
    "StudentConfig",
    "StudentModel",
    "StudentOutput",
    "build_student",
    "count_parameters",
    "get_student_config",
    "list_students",
    "load_student",
    "read_student_checkpoint",
    "save_student",
]
