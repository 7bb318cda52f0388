"""Mini teacher pretraining: HuBERT's iterations (k-means targets of MFCC frames, then of the previous
iteration's hidden states; masked prediction).

:func:`pretrain_teacher` trains a small transformers ``HubertModel`` on a Kaldi data dir (or returns the
cached one) and gives its folder, which :func:`~audio_compress.teachers.load_teacher`, the feature dump and
the ``ssl_teacher_local`` upstream read like any other teacher.
"""

from audio_compress.teachers.pretrain.config import MaskConfig, PretrainConfig, TargetConfig
from audio_compress.teachers.pretrain.head import PredictionHead, hubert_loss, masked_prediction_loss
from audio_compress.teachers.pretrain.run import (
    TeacherPretraining,
    cache_key,
    data_fingerprint,
    pretrain_teacher,
    write_initial_teacher,
)
from audio_compress.teachers.pretrain.targets import ClusterTargets, fit_cluster_targets, layer_frames, mfcc_frames
from audio_compress.teachers.pretrain.task import TeacherPretrainTask, initial_model

__all__ = [
    "ClusterTargets", "MaskConfig", "PredictionHead", "PretrainConfig", "TargetConfig", "TeacherPretrainTask",
    "TeacherPretraining", "cache_key", "data_fingerprint", "fit_cluster_targets", "hubert_loss",
    "initial_model", "layer_frames", "masked_prediction_loss", "mfcc_frames", "pretrain_teacher",
    "write_initial_teacher",
]
