"""Shared base of the speech distillation methods: which teacher layers a method consumes, the
config checks every method shares, and where teacher targets come from (the online teacher or a
feature dump, told apart by the batch type)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from audio_compress.data.dataset import WaveBatch
from audio_compress.dump import DumpBatch

if TYPE_CHECKING:  # the config imports this package, which keeps it free of model imports
    from audio_compress.models import StudentConfig, StudentModel
    from audio_compress.tasks.config import DistillConfig
    from audio_compress.teachers import FrozenTeacher


def default_teacher_layers(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state index for each student layer: 1:1 when the depths match, else evenly
    spaced (student layer i of L_s takes teacher layer round(i * L_t / L_s))."""
    if student_layers == teacher_layers:
        return list(range(1, teacher_layers + 1))
    return [round((i + 1) * teacher_layers / student_layers) for i in range(student_layers)]


class DistillMethod(abc.ABC):
    """One distillation method for one run: its teacher layers, config checks and loss.

    Built from the run's config, the student's architecture and the teacher's depth, so that the
    teacher layers are known before any model exists (the feature dump needs them). A subclass
    sets :attr:`name` and :attr:`upstream`, implements :meth:`loss` and, where they differ from
    the defaults, :meth:`teacher_layers`, :meth:`dump_refusal` and :meth:`check`.

    Args:
        config: the run's :class:`~audio_compress.tasks.config.DistillConfig`.
        student: the student's architecture (``StudentConfig``).
        teacher_layers: the teacher's number of Transformer layers.

    Attributes:
        layer_map: teacher hidden-state index for each student layer 1..L (``config.teacher_layers``,
            else :func:`default_teacher_layers`).
    """

    #: the ``method`` value of the config
    name: ClassVar[str]
    #: s3prl upstream entry that loads the exported student
    upstream: ClassVar[str]

    def __init__(self, config: DistillConfig, student: StudentConfig, teacher_layers: int) -> None:
        self.config = config
        self.student_config = student
        self.layer_map = list(config.teacher_layers or default_teacher_layers(student.num_layers, teacher_layers))
        if len(self.layer_map) != student.num_layers:
            raise ValueError(
                f"teacher_layers has {len(self.layer_map)} entries but the student has {student.num_layers} layers"
            )

    def teacher_layers(self) -> list[int]:
        """Teacher hidden-state indices the loss consumes (what a feature dump must store)."""
        return list(self.layer_map)

    def dump_refusal(self) -> str | None:
        """Why this configuration needs the online teacher at every step, or None when teacher
        targets may come from a feature dump."""
        return None

    def check(self, teacher_width: int) -> None:
        """Config checks against the teacher (hidden size ``teacher_width``), run before training.

        Refuses a feature dump (``data.dump_dir`` / ``data.dev_dump_dir``) when
        :meth:`dump_refusal` gives a reason.
        """
        reason = self.dump_refusal()
        if reason is not None and (self.config.data.dump_dir or self.config.data.dev_dump_dir):
            raise ValueError(reason)

    def compute_loss(self, batch: WaveBatch, student: StudentModel, teacher: FrozenTeacher, train: bool,
                     generator: torch.Generator) -> dict[str, Tensor]:
        """Loss of one batch: ``{"loss": total, <term>: value, ...}`` (the terms are logged).

        Args:
            batch: a ``WaveBatch`` (online teacher) or a ``DumpBatch`` (targets from a dump).
            student: the student being trained.
            teacher: the frozen teacher.
            train: training step (False: validation).
            generator: the run's checkpointed random generator for what a method samples per
                batch (ARMHuBERT's span masks).

        Raises ``ValueError`` with :meth:`dump_refusal`'s reason for a dumped batch that this
        configuration cannot use.
        """
        reason = self.dump_refusal()
        if reason is not None and isinstance(batch, DumpBatch):
            raise ValueError(reason)
        return self.loss(batch, student, teacher, train, generator)

    @abc.abstractmethod
    def loss(self, batch: WaveBatch, student: StudentModel, teacher: FrozenTeacher, train: bool,
             generator: torch.Generator) -> dict[str, Tensor]:
        """The method's loss of one batch (arguments as :meth:`compute_loss`, which checks the
        batch first)."""

    def targets(self, batch: WaveBatch, teacher: FrozenTeacher, layers: Sequence[int]) -> list[Tensor]:
        """Teacher hidden states ``layers`` of the batch: read from a ``DumpBatch``, else computed
        by the online teacher."""
        if isinstance(batch, DumpBatch):
            position = {layer: i for i, layer in enumerate(batch.layers)}
            missing = [layer for layer in layers if layer not in position]
            if missing:
                raise ValueError(
                    f"the feature dump lacks teacher layers {missing} (has {batch.layers}); re-run the dump"
                )
            return [batch.targets[position[layer]] for layer in layers]
        states = teacher(batch.wavs, padding_mask=batch.padding_mask).hidden_states
        return [states[layer] for layer in layers]
