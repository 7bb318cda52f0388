"""The pretraining experiment (on the shared runner) and its cache of finished teachers.

:func:`pretrain_teacher` trains (or reuses) a teacher in ``<cache_root>/<key>/``, where ``key`` hashes
the content of the training and dev audio (utterance ids and file bytes, not their paths) and every
config value that changes the weights. The finished teacher is ``<cache_root>/<key>/teacher``, a
transformers folder that :func:`~audio_compress.teachers.load_teacher` reads, written atomically; the
runner's done marker makes a second call return it without training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from audio_compress.data.dataset import SpeechDataset
from audio_compress.data.kaldi import read_kaldi_map
from audio_compress.tasks.datamodule import DistillDataModule
from audio_compress.teachers.pretrain.config import PretrainConfig
from audio_compress.teachers.pretrain.targets import ClusterTargets, corpus_features, fit_cluster_targets
from audio_compress.teachers.pretrain.task import TeacherPretrainTask
from audio_compress.teachers.teacher import save_teacher
from compact_ssl.io import atomic_write_with
from compact_ssl.training import Experiment, Setup

TEACHER = "teacher"
CODEBOOK = "kmeans.pt"
#: config keys that do not change the weights (left out of the cache key)
VOLATILE = ("devices", "num_nodes", "accelerator", "strategy", "log_every_n_steps", "num_workers")


class TeacherPretraining(Experiment):
    """One pretraining run in the run folder itself; exports ``<rundir>/teacher``."""

    config_class = PretrainConfig
    seed_dirs = False
    run_outputs = (TEACHER, CODEBOOK)

    def setup(self, config: PretrainConfig, rundir: Path) -> Setup:
        tcfg, ckpt_dir = config.trainer, rundir / "checkpoints"
        last = ModelCheckpoint(dirpath=ckpt_dir, filename="step={step}", auto_insert_metric_name=False,
                               every_n_train_steps=tcfg.ckpt_every_n_steps, save_top_k=1, save_last=True)
        module = TeacherPretrainTask(config, fit_or_load_codebook(config, rundir / CODEBOOK))
        return Setup(module, DistillDataModule(config.data, seed=tcfg.seed), [last], lr_interval="step",
                     trainer_kwargs={"gradient_clip_val": config.optim.grad_clip or None, "check_val_every_n_epoch": None,
                                     "val_check_interval": tcfg.val_every_n_steps, "use_distributed_sampler": False})

    def summarize(self, config: PretrainConfig, setup: Setup, trainer, rundir: Path) -> dict:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("val_loss", "val/masked_acc")}
        return {"steps": trainer.global_step, "teacher": str(rundir / TEACHER), **metrics}

    def export(self, config: PretrainConfig, setup: Setup, trainer, rundir: Path, summary: dict) -> None:
        save_teacher(setup.module.model, rundir / TEACHER)

    def describe(self, seed: int, summary: dict) -> str:
        return f"Pretraining finished after {summary['steps']} steps: {summary['teacher']}"


def fit_or_load_codebook(config: PretrainConfig, path: Path) -> ClusterTargets:
    """The k-means codebook of the training set, fitted once and kept in ``path`` (resumes reuse it)."""
    if path.is_file():
        return ClusterTargets.from_dict(torch.load(path, weights_only=True))
    dataset = SpeechDataset(config.data.train, resample=config.data.resample)
    features = corpus_features((dataset[i]["wav"] for i in range(len(dataset))), total=len(dataset))
    codebook = fit_cluster_targets(features, config.targets.num_clusters, config.trainer.seed, config.targets.max_frames)
    atomic_write_with(path, lambda tmp: torch.save(codebook.to_dict(), tmp))
    return codebook


def data_fingerprint(data_dir: str | Path) -> str:
    """sha256 over the utterance ids and audio bytes of a Kaldi data dir (paths do not count)."""
    data_dir = Path(data_dir)
    digest = hashlib.sha256()
    for utt, path in sorted(read_kaldi_map(data_dir / "wav.scp").items()):
        audio = Path(path)
        if not audio.is_file():
            raise FileNotFoundError(f"{data_dir / 'wav.scp'}: {utt} points to {path}, which does not exist; "
                                    "rerun the data preparation stage")
        digest.update(utt.encode() + b"\0" + hashlib.sha256(audio.read_bytes()).digest())
    return digest.hexdigest()


def cache_key(config: PretrainConfig) -> str:
    """``<architecture>-<hash>`` of the data content and the weight-relevant config."""
    values = config.to_dict()
    values["data"]["train"] = data_fingerprint(config.data.train)
    values["data"]["dev"] = data_fingerprint(config.data.dev)
    for section in ("data", "trainer"):
        for key in VOLATILE:
            values[section].pop(key, None)
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return f"{config.architecture}-{hashlib.sha256(blob).hexdigest()[:16]}"


def pretrain_teacher(config: PretrainConfig, cache_root: str | Path) -> Path:
    """The pretrained teacher folder for ``config``: trained into ``<cache_root>/<key>/`` unless already there."""
    rundir = Path(cache_root) / cache_key(config)
    TeacherPretraining().run(config, rundir)
    teacher = rundir / TEACHER
    if not (teacher / "config.json").is_file():
        raise FileNotFoundError(f"{rundir}: finished but has no {TEACHER}/config.json; delete {rundir} and rerun")
    return teacher
