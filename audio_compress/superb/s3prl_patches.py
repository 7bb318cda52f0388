"""Run-time patches to s3prl 0.4.18, applied by :mod:`audio_compress.superb.runner` in its own
process (no file of s3prl is edited; all are tested):

* the compatibility layer :mod:`audio_compress.upstream.compat` (torchaudio / huggingface_hub /
  ``torch.load`` changes) through ``register()``;
* ``catalyst`` (imported by the speech_commands expert only for ``DistributedSamplerWrapper``)
  is not a dependency: a small equivalent is installed when catalyst is absent;
* the ctc expert's ``load_dataset`` pops ``num_workers`` out of the shared corpus config, so
  every dataloader after the first used s3prl's default of 12 workers: it now gets a copy;
* ``get_scheduler`` pops ``name`` out of the config that is saved in checkpoints, which broke
  resuming a run with the scheduler on (``--paper_deviations true``): it now gets a copy;
* the VoxCeleb1 SID dataset caches its file lists in s3prl's package folder under fixed names
  (``train.pkl``...), so a second dataset silently reused the first one's lists: the cache
  goes to ``<expdir>/.voxceleb1_cache/<hash of file_path and meta_data>/``;
* DDP: the leader evaluates alone during training, but the experts' ``best_score`` buffer made
  every forward of the DDP-wrapped downstream a collective (buffer broadcast), so that
  evaluation deadlocked or crashed the other ranks: modules are wrapped with
  ``broadcast_buffers=False`` (no buffer needs syncing: parameters are synced by the gradient
  all-reduce). With ``--device cpu`` (gloo) ``torch.cuda.set_device`` is skipped and
  ``device_ids`` is ``None`` (both fail for CPU modules);
* a training dataloader without a single batch (fewer items than the batch size with
  ``drop_last``) made s3prl loop over empty epochs forever: it is now an error naming the split,
  the dataset size and the batch size;
* DDP training never ended cleanly: the non-leader ranks skip the step counter's update
  (``continue`` before ``pbar.update``), so they kept training after the leader had finished and
  died in the next all-reduce. On non-leader ranks the counter now advances with every optimizer
  step (``zero_grad``, which every rank calls once per update), so all ranks stop together.

Scalars the downstream experts log are collected by :data:`RECORDER` (the runner's
``--record``). This module must not import the runner: the runner is the process's
``__main__``, and a second copy of it would hold another recorder.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import types
from collections.abc import Sequence
from pathlib import Path

from compact_ssl.io import write_json

__all__ = ["ScalarRecorder", "RECORDER", "EmptyDataloaderError", "install_fixes", "install_catalyst_shim",
           "install_ctc_corpus", "per_invocation_fixes"]


class ScalarRecorder:
    """Collects ``add_scalar`` calls of the current ``run_downstream`` invocation."""

    def __init__(self):
        self.scalars: list[dict] = []
        self.args: dict | None = None

    def reset(self) -> None:
        self.scalars = []
        self.args = None

    def add(self, tag: str, value, step) -> None:
        try:
            value = float(value)
        except (TypeError, ValueError):
            return
        self.scalars.append({"tag": str(tag), "value": value, "step": int(step or 0)})

    def write(self, path: str | Path, argv: Sequence[str]) -> None:
        write_json(path, {"argv": list(argv), "args": self.args, "scalars": self.scalars}, indent=1)


RECORDER = ScalarRecorder()


def install_catalyst_shim() -> None:
    """Provide ``catalyst.data.sampler.DistributedSamplerWrapper`` when catalyst is not installed."""
    if "catalyst" in sys.modules or importlib.util.find_spec("catalyst") is not None:
        return
    from torch.utils.data import DistributedSampler

    class _SamplerPositions:
        def __init__(self, sampler):
            self.sampler = sampler

        def __len__(self):
            return len(self.sampler)

    class DistributedSamplerWrapper(DistributedSampler):
        """Shards the indices an arbitrary sampler draws (e.g. a ``WeightedRandomSampler``)
        across DDP ranks: each epoch the wrapped sampler is drawn once and every rank takes
        its share of the drawn positions (as ``catalyst.data.sampler`` does)."""

        def __init__(self, sampler, num_replicas=None, rank=None, shuffle: bool = True):
            super().__init__(_SamplerPositions(sampler), num_replicas=num_replicas, rank=rank,
                             shuffle=shuffle)
            self.sampler = sampler

        def __iter__(self):
            drawn = list(iter(self.sampler))
            return iter([drawn[p] for p in super().__iter__()])

    pkg = types.ModuleType("catalyst")
    pkg.__path__ = []
    data = types.ModuleType("catalyst.data")
    data.__path__ = []
    sampler = types.ModuleType("catalyst.data.sampler")
    sampler.DistributedSamplerWrapper = DistributedSamplerWrapper
    sampler.__doc__ = "audio_compress stand-in for catalyst.data.sampler (not installed)."
    pkg.data, data.sampler = data, sampler
    sys.modules.update({"catalyst": pkg, "catalyst.data": data, "catalyst.data.sampler": sampler})


def install_ctc_corpus(s3prl_root: str | None) -> str:
    """Make ``s3prl.downstream.ctc.corpus`` importable; returns where it comes from."""
    import s3prl.downstream.ctc as ctc_pkg

    if s3prl_root:
        ctc_dir = Path(s3prl_root).resolve() / "s3prl" / "downstream" / "ctc"
        if (ctc_dir / "corpus").is_dir():
            if str(ctc_dir) not in ctc_pkg.__path__:
                ctc_pkg.__path__.append(str(ctc_dir))
            return str(ctc_dir / "corpus")
    existing = sys.modules.get("s3prl.downstream.ctc.corpus")
    if existing is not None:
        return getattr(existing, "_audio_compress_source", "s3prl")
    if importlib.util.find_spec("s3prl.downstream.ctc.corpus") is not None:
        return "s3prl"
    from audio_compress.superb import ctc_corpus

    corpus = types.ModuleType("s3prl.downstream.ctc.corpus")
    corpus.__spec__ = importlib.machinery.ModuleSpec(corpus.__name__, None, is_package=True)
    corpus.__path__ = []
    corpus._audio_compress_source = "audio_compress.superb.ctc_corpus"
    corpus.__doc__ = ("audio_compress stand-in: the PyPI s3prl wheel lacks this package; only "
                      "'libriphone' is provided (audio_compress.superb.ctc_corpus).")
    corpus.libriphone = ctc_corpus
    sys.modules["s3prl.downstream.ctc.corpus"] = corpus
    sys.modules["s3prl.downstream.ctc.corpus.libriphone"] = ctc_corpus
    ctc_pkg.corpus = corpus
    return "audio_compress.superb.ctc_corpus"


def _patch_ctc_load_dataset() -> None:
    import s3prl.downstream.ctc.data as ctc_data

    original = ctc_data.load_dataset
    if getattr(original, "_audio_compress", False):
        return

    def load_dataset(split, tokenizer, corpus):
        return load_dataset.original(split, tokenizer, dict(corpus))

    load_dataset.original = original
    load_dataset._audio_compress = True
    ctc_data.load_dataset = load_dataset
    mod = sys.modules.get("s3prl.downstream.ctc.expert")
    if mod is not None:
        mod.load_dataset = load_dataset


def _voxceleb1_cache(expdir: str, config: dict) -> None:
    import s3prl.downstream.voxceleb1.dataset as vox

    datarc = config.get("downstream_expert", {}).get("datarc", {})
    key = json.dumps([str(datarc.get("file_path")), str(datarc.get("meta_data"))])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    vox.CACHE_PATH = str(Path(expdir).resolve() / ".voxceleb1_cache" / digest) + os.sep


def _install_ddp(runner_mod, cpu: bool) -> None:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if cpu:
        torch.cuda.set_device = lambda *a, **k: None

    def ddp(module, device_ids=None, **kwargs):
        kwargs.setdefault("broadcast_buffers", False)
        return DistributedDataParallel(module, device_ids=None if cpu else device_ids, **kwargs)

    runner_mod.DDP = ddp


_OVERALL: list = []


def _install_ddp_step_counter(runner_mod) -> None:
    if getattr(runner_mod.Runner._get_optimizer, "_audio_compress", False):
        return
    base_tqdm = runner_mod.tqdm

    class _Tqdm(base_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if kwargs.get("desc") == "overall":
                _OVERALL.append(self)

    runner_mod.tqdm = _Tqdm
    original = runner_mod.Runner._get_optimizer

    def _get_optimizer(self, model_params):
        optimizer = original(self, model_params)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() > 0:
            zero_grad = optimizer.zero_grad

            def counting_zero_grad(*args, **kwargs):
                zero_grad(*args, **kwargs)
                if _OVERALL:
                    _OVERALL[-1].update(1)

            optimizer.zero_grad = counting_zero_grad
        return optimizer

    _get_optimizer._audio_compress = True
    runner_mod.Runner._get_optimizer = _get_optimizer


class EmptyDataloaderError(RuntimeError):
    """A dataloader that yields no batch (s3prl would loop over empty epochs forever)."""


def _install_empty_loader_check(runner_mod) -> None:
    if getattr(runner_mod.Runner._get_downstream, "_audio_compress", False):
        return
    original = runner_mod.Runner._get_downstream

    def _get_downstream(self):
        entry = original(self)
        get_dataloader = entry.model.get_dataloader

        def checked_get_dataloader(split, *args, **kwargs):
            loader = get_dataloader(split, *args, **kwargs)
            try:
                batches = len(loader)
            except TypeError:
                return loader
            if batches == 0:
                size = len(getattr(loader, "dataset", []) or [])
                raise EmptyDataloaderError(
                    f"the {split!r} dataloader of downstream {self.args.downstream!r} has no batch: "
                    f"{size} item(s), batch size {getattr(loader, 'batch_size', '?')}, drop_last "
                    f"{getattr(loader, 'drop_last', '?')}. Use a smaller batch size (an override of "
                    "downstream_expert.datarc.*batch_size*) or more data.")
            return loader

        entry.model.get_dataloader = checked_get_dataloader
        return entry

    _get_downstream._audio_compress = True
    runner_mod.Runner._get_downstream = _get_downstream


def install_fixes(s3prl_root: str | None) -> str:
    """Everything that does not depend on the invocation's arguments; returns where the ctc
    corpus readers come from (see :func:`install_ctc_corpus`)."""
    import s3prl.downstream.runner as runner_mod
    import s3prl.run_downstream as rd
    from tensorboardX import SummaryWriter

    _install_ddp_step_counter(runner_mod)
    _install_empty_loader_check(runner_mod)

    class RecordingSummaryWriter(SummaryWriter):
        def add_scalar(self, tag, scalar_value, global_step=None, *args, **kwargs):
            RECORDER.add(tag, scalar_value, global_step)
            return super().add_scalar(tag, scalar_value, global_step, *args, **kwargs)

    runner_mod.SummaryWriter = RecordingSummaryWriter

    if not getattr(runner_mod.get_scheduler, "_audio_compress", False):
        original_scheduler = runner_mod.get_scheduler

        def get_scheduler(optimizer, total_steps, scheduler_config):
            return original_scheduler(optimizer, total_steps, copy.deepcopy(scheduler_config))

        get_scheduler._audio_compress = True
        runner_mod.get_scheduler = get_scheduler

    if not getattr(rd.get_downstream_args, "_audio_compress", False):
        original_args = rd.get_downstream_args

        def get_downstream_args():
            args, config, backup_files = original_args()
            RECORDER.args = {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v))
                             for k, v in vars(args).items()}
            per_invocation_fixes(args, config, runner_mod)
            return args, config, backup_files

        get_downstream_args._audio_compress = True
        rd.get_downstream_args = get_downstream_args

    install_catalyst_shim()
    return install_ctc_corpus(s3prl_root)


def per_invocation_fixes(args, config, runner_mod) -> None:
    """Fixes that depend on the invocation's downstream, experiment folder and DDP setting."""
    downstream = getattr(args, "downstream", None)
    if downstream == "ctc":
        _patch_ctc_load_dataset()
    elif downstream == "voxceleb1":
        _voxceleb1_cache(args.expdir, config)
    if getattr(args, "local_rank", None) is not None:
        _install_ddp(runner_mod, cpu=str(args.device).startswith("cpu"))
