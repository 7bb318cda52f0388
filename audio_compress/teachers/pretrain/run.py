"""The pretraining experiment (on the shared runner) and its cache of finished teachers.

:func:`pretrain_teacher` trains (or reuses) a teacher in ``<cache_root>/<key>/``, where ``key`` hashes
the content of the training and dev audio (utterance ids and file bytes, not their paths) and every
config value that changes the weights. The finished teacher is ``<cache_root>/<key>/teacher``, a
transformers folder that :func:`~audio_compress.teachers.load_teacher` reads, written atomically; the
runner's done marker makes a second call return it without training. Each HuBERT iteration is such a run
(iteration ``i`` keyed by the config with ``targets.iterations = i``), so a two-iteration teacher reuses a
cached one-iteration teacher of the same config as its first iteration.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from audio_compress.data.dataset import SpeechDataset
from audio_compress.data.kaldi import read_kaldi_map
from audio_compress.tasks.datamodule import DistillDataModule
from audio_compress.teachers.pretrain.config import PretrainConfig, TargetConfig
from audio_compress.teachers.pretrain.targets import ClusterTargets, corpus_features, fit_cluster_targets
from audio_compress.teachers.pretrain.task import TeacherPretrainTask, initial_model
from audio_compress.teachers.teacher import FrozenTeacher, load_teacher, save_teacher
from compact_ssl.io import atomic_write_with, staged_folder
from compact_ssl.training import Experiment, Setup

TEACHER = "teacher"
CODEBOOK = "kmeans.pt"
#: config keys that do not change the weights (left out of the cache key)
VOLATILE = ("devices", "num_nodes", "accelerator", "strategy", "log_every_n_steps", "num_workers")


class TeacherPretraining(Experiment):
    """One pretraining run (one HuBERT iteration) in the run folder itself; exports ``<rundir>/teacher``.

    ``previous``: the previous iteration's teacher folder, whose hidden state ``targets.layer`` gives the
    targets; ``None`` for the first iteration (MFCC targets).
    """

    config_class = PretrainConfig
    seed_dirs = False
    run_outputs = (TEACHER, CODEBOOK)
    frozen_eval_modules = True  # the previous iteration's teacher

    def __init__(self, previous: str | Path | None = None):
        self.previous = previous

    def setup(self, config: PretrainConfig, rundir: Path) -> Setup:
        tcfg, ckpt_dir = config.trainer, rundir / "checkpoints"
        last = ModelCheckpoint(dirpath=ckpt_dir, filename="step={step}", auto_insert_metric_name=False,
                               every_n_train_steps=tcfg.ckpt_every_n_steps, save_top_k=1, save_last=True)
        previous = load_teacher(self.previous) if self.previous is not None else None
        module = TeacherPretrainTask(config, fit_or_load_codebook(config, rundir / CODEBOOK, previous), previous)
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


def fit_or_load_codebook(config: PretrainConfig, path: Path, previous: FrozenTeacher | None = None) -> ClusterTargets:
    """The k-means codebook of the training set's MFCC frames, or of ``previous``'s hidden state
    ``config.targets.layer``, fitted once and kept in ``path`` (resumes reuse it)."""
    if path.is_file():
        return ClusterTargets.from_dict(torch.load(path, weights_only=True))
    dataset = SpeechDataset(config.data.train, resample=config.data.resample)
    features = corpus_features((dataset[i]["wav"] for i in range(len(dataset))), total=len(dataset),
                               teacher=previous, layer=config.targets.layer, cmvn=config.targets.cmvn)
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
    if values["targets"]["iterations"] == 1:
        # the first iteration does not read them: it is the same run whatever later iterations do
        del values["targets"]["iterations"], values["targets"]["layer"]
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return f"{config.architecture}-{hashlib.sha256(blob).hexdigest()[:16]}"


def pretrain_teacher(config: PretrainConfig, cache_root: str | Path) -> Path:
    """The pretrained teacher folder for ``config``: each iteration trained into ``<cache_root>/<key>/`` unless
    already there, the next one's targets taken from it; returns the last iteration's teacher."""
    teacher = None
    for iteration in range(1, config.targets.iterations + 1):
        # the first iteration reads no layer: at the default, its run is every config's first iteration
        layer = config.targets.layer if iteration > 1 else TargetConfig.layer
        stage = replace(config, targets=replace(config.targets, iterations=iteration, layer=layer))
        rundir = Path(cache_root) / cache_key(stage)
        TeacherPretraining(teacher).run(stage, rundir)
        teacher = rundir / TEACHER
        if not (teacher / "config.json").is_file():
            raise FileNotFoundError(f"{rundir}: finished but has no {TEACHER}/config.json; delete {rundir} and rerun")
    return teacher


def write_initial_teacher(config: PretrainConfig, out: str | Path) -> None:
    """``initial_model(config)`` drawn after seeding with ``trainer.seed`` (global generator state restored
    afterwards), written atomically as a teacher folder ``out``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.trainer.seed)
        model = initial_model(config)
    with staged_folder(out) as staging:
        save_teacher(model, staging)
