"""Mini SUPERB in probe mode: the SUPERB protocol on cached features, in one process.

The SUPERB protocol freezes the upstream and trains, per task, a learnable softmax-weighted sum of its
hidden states followed by a small downstream model. The s3prl runner does that with a per-run start-up of
about 20 s and re-runs the upstream at every step, which makes dozens of mini runs (rows x tasks x seeds)
too slow for a CPU benchmark. Here every upstream runs once per split (through its s3prl entry, exactly
as the runner builds it), its hidden states are cached, and each downstream trains on the cache.

Tasks, read from Kaldi data dirs (``train``, ``dev``, ``test``; utterances labelled ``_none_`` are left out
of the utterance tasks):

* ``ks`` (keyword spotting, ``utt2keyword``), ``sid`` (speaker identification, ``utt2spk``), ``ic``
  (intent classification, ``utt2intent``): accuracy (%). Downstream: weighted sum -> Linear -> ReLU ->
  mean over the valid frames -> Linear. The ReLU before pooling is what lets fbank learn: s3prl's fbank
  is normalised per utterance (zero mean in every bin), so a linear map followed by mean pooling sees
  nothing but its own bias.
* ``pr`` (phoneme recognition, ``phn``): PER (%), frame-level Linear -> ReLU -> Linear, CTC, greedy
  decoding.

The model is selected on the dev split (best epoch) and scored once on the test split. Each hidden state
is standardised per dimension with training-split statistics (a fixed affine map per layer, so no upstream
gains or loses expressiveness; it only spares the optimiser very different scales), once, before training.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import editdistance
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from audio_compress.data.kaldi import read_kaldi_map
from audio_compress.superb.commands import UpstreamSpec
from compact_ssl.audio import load_audio
from compact_ssl.io import atomic_path

NONE_LABEL = "_none_"
#: task -> (label file of the Kaldi data dir, metric, higher is better)
PROBE_TASKS: dict[str, tuple[str, str, bool]] = {
    "ks": ("utt2keyword", "acc", True),
    "sid": ("utt2spk", "acc", True),
    "ic": ("utt2intent", "acc", True),
    "pr": ("phn", "per", False),
}
SPLITS = ("train", "dev", "test")
SAMPLE_RATE = 16000


@dataclass
class ProbeConfig:
    """Downstream training of every probe (the same for every upstream)."""

    hidden_dim: int = 128
    epochs: int = 60
    pr_epochs: int = 100
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4


@dataclass
class Features:
    """Cached hidden states of one upstream on one split: ``states[i]`` is ``(L, T_i, D)`` (float16)."""

    utt_ids: list[str]
    states: list[Tensor]

    @property
    def num_layers(self) -> int:
        return self.states[0].shape[0]

    @property
    def dim(self) -> int:
        return self.states[0].shape[-1]


def _signature(upstream: UpstreamSpec, data_dir: Path) -> str:
    """Content key of a cache: the upstream spec, its checkpoint's bytes, the split's wav.scp and the size
    and modification time of every audio file (a corpus regenerated in place gets new features)."""
    h = hashlib.sha256(upstream.as_spec().encode())
    if upstream.ckpt and Path(upstream.ckpt).is_file():
        h.update(Path(upstream.ckpt).read_bytes())
    elif upstream.ckpt and Path(upstream.ckpt).is_dir():
        for f in sorted(Path(upstream.ckpt).rglob("*")):
            if f.is_file():
                h.update(f.name.encode() + f.read_bytes())
    h.update((data_dir / "wav.scp").read_bytes())
    for path in read_kaldi_map(data_dir / "wav.scp").values():
        st = Path(path).stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_upstream(upstream: UpstreamSpec) -> nn.Module:
    """The upstream as s3prl's runner builds it (our entries registered; a released file's YAML as
    ``model_config``)."""
    from audio_compress.upstream import register

    register()
    from s3prl.nn import S3PRLUpstream

    extra = {"model_config": upstream.model_config} if upstream.model_config else None
    return S3PRLUpstream(upstream.name, path_or_url=upstream.ckpt, extra_conf=extra).eval()


def feature_cache(upstream: UpstreamSpec, data_dir: str | Path, cache_dir: str | Path) -> Path:
    """The cache file of ``upstream``'s features on ``data_dir`` (its name carries the content key)."""
    return Path(cache_dir) / f"{upstream.label}-{Path(data_dir).name}-{_signature(upstream, Path(data_dir))}.pt"


def load_features(path: str | Path) -> Features:
    """Features written by :func:`cached_features`."""
    saved = torch.load(path, weights_only=True)
    return Features(saved["utt_ids"], saved["states"])


def cached_features(upstream: UpstreamSpec, data_dir: str | Path, cache_dir: str | Path) -> Path:
    """The cache file of ``upstream``'s hidden states on every utterance of ``data_dir``, computed first when
    no cache of this upstream and data exists (written atomically)."""
    cache = feature_cache(upstream, data_dir, cache_dir)
    if not cache.is_file():
        write_features(upstream, data_dir, cache)
    return cache


@torch.no_grad()
def write_features(upstream: UpstreamSpec, data_dir: str | Path, cache: str | Path) -> None:
    """Run ``upstream`` on every utterance of ``data_dir`` and write its hidden states to ``cache``
    atomically (:func:`feature_cache` names it)."""
    cache = Path(cache)
    model = build_upstream(upstream)
    wavs = read_kaldi_map(Path(data_dir) / "wav.scp")
    utt_ids, states = sorted(wavs), []
    for utt in tqdm(utt_ids, desc=f"{upstream.label} {Path(data_dir).name}", unit="utt", leave=False):
        wav = torch.from_numpy(load_audio(wavs[utt], sample_rate=SAMPLE_RATE))
        hs, lens = model(wav[None], torch.tensor([wav.shape[0]]))
        states.append(torch.stack([h[0, : int(n[0])] for h, n in zip(hs, lens)]).to(torch.float16))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        torch.save({"utt_ids": utt_ids, "states": states}, tmp)


def extract_features(upstream: UpstreamSpec, data_dir: str | Path, cache_dir: str | Path) -> Features:
    """Hidden states of ``upstream`` on every utterance of ``data_dir`` (:func:`cached_features`)."""
    return load_features(cached_features(upstream, data_dir, cache_dir))


class _Probe(nn.Module):
    """Softmax-weighted sum of the (standardised) layers, then Linear -> ReLU frame by frame; ``out`` maps the
    subclass's pooled or per-frame features to the classes."""

    def __init__(self, num_layers: int, dim: int, hidden: int, classes: int):
        super().__init__()
        # one layer (fbank) has nothing to weigh: no parameter, no einsum, no gradient through the input
        self.layer_logits = nn.Parameter(torch.zeros(num_layers)) if num_layers > 1 else None
        self.proj = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, classes)

    def layer_weights(self) -> Tensor:
        return torch.ones(1) if self.layer_logits is None else torch.softmax(self.layer_logits.detach(), 0)

    def frames(self, x: Tensor) -> Tensor:
        """``(B, L, T, D)`` -> ``(B, T, hidden)``."""
        mixed = x[:, 0] if self.layer_logits is None else torch.einsum("l,bltd->btd", torch.softmax(self.layer_logits, 0), x)
        return F.relu(self.proj(mixed))


class UtteranceProbe(_Probe):
    """Frames -> mean over the valid frames -> Linear: the utterance tasks."""

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h = self.frames(x)
        valid = (torch.arange(h.shape[1])[None] < lengths[:, None]).to(h.dtype)
        return self.out((h * valid[..., None]).sum(1) / lengths[:, None].to(h.dtype))


class FrameProbe(_Probe):
    """Frames -> Linear: per-frame token logits (CTC)."""

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.out(self.frames(x))


def _pad(states: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([s.shape[1] for s in states])
    out = torch.zeros(len(states), states[0].shape[0], int(lengths.max()), states[0].shape[-1])
    for i, s in enumerate(states):
        out[i, :, : s.shape[1]] = s.float()
    return out, lengths


def make_batches(states: Sequence[Tensor], labels: Sequence, batch_size: int, mean: Tensor, std: Tensor
                 ) -> list[tuple[Tensor, Tensor, list]]:
    """Standardised (``(x - mean) / std`` per layer and dimension), padded batches of utterances of similar
    length (sorted by length, then cut), built once: no epoch pays for padding or scaling again."""
    order = sorted(range(len(states)), key=lambda i: states[i].shape[1])
    out = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x, lengths = _pad([(states[i].float() - mean[:, None]) / std[:, None] for i in idx])
        out.append((x, lengths, [labels[i] for i in idx]))
    return out


def layer_stats(states: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Per layer and dimension mean and std ``(L, D)`` over every frame of ``states`` (``(L, T_i, D)`` each)."""
    total = sum(s.shape[1] for s in states)
    s1 = sum(s.float().sum(1) for s in states)
    s2 = sum(s.float().pow(2).sum(1) for s in states)
    mean = s1 / total
    return mean, (s2 / total - mean.pow(2)).clamp_min(0).sqrt() + 1e-5


def greedy_ctc(logits: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path decoding: argmax per frame, repeats merged, blanks dropped."""
    out = []
    for row, n in zip(logits.argmax(-1), lengths.tolist()):
        ids = torch.unique_consecutive(row[:n]).tolist()
        out.append([i for i in ids if i != blank])
    return out


def error_rate(hyps: Sequence[Sequence], refs: Sequence[Sequence]) -> float:
    """Token error rate (%): total edit distance over total reference length."""
    return 100.0 * sum(editdistance.eval(h, r) for h, r in zip(hyps, refs)) / sum(len(r) for r in refs)


@dataclass
class _Split:
    states: list[Tensor]
    labels: list  # class index (utterance tasks) or token id list (pr)


def task_splits(task: str, features: Mapping[str, Features], data_dirs: Mapping[str, Path]
                ) -> tuple[dict[str, _Split], list[str]]:
    """The labelled utterances of ``task`` per split and the label vocabulary (PR: blank first)."""
    label_file = PROBE_TASKS[task][0]
    raw = {}
    for split in SPLITS:
        labels = read_kaldi_map(data_dirs[split] / label_file)
        feats = features[split]
        missing = [u for u in feats.utt_ids if u not in labels]
        if missing:
            raise ValueError(f"{data_dirs[split] / label_file}: no label for {len(missing)} utterances "
                             f"(e.g. {missing[0]}); rebuild the data dir")
        raw[split] = [(s, labels[u]) for u, s in zip(feats.utt_ids, feats.states) if labels[u] != NONE_LABEL]
    if task == "pr":
        # the phone set of every split, as a lexicon's would be (a phone missing from train is simply never learnt)
        vocab = ["<blank>", *sorted({p for split in SPLITS for _, lab in raw[split] for p in lab.split()})]
        index = {p: i for i, p in enumerate(vocab)}
        conv = {split: _Split([s for s, _ in items], [[index[p] for p in lab.split()] for _, lab in items])
                for split, items in raw.items()}
    else:
        vocab = sorted({lab for _, lab in raw["train"]})
        index = {c: i for i, c in enumerate(vocab)}
        unseen = {lab for split in SPLITS for _, lab in raw[split]} - set(index)
        if unseen:
            raise ValueError(f"{task}: classes {sorted(unseen)} have no training utterance")
        conv = {split: _Split([s for s, _ in items], [index[lab] for _, lab in items]) for split, items in raw.items()}
    for split, part in conv.items():
        if not part.states:
            raise ValueError(f"{task}: the {split} split ({data_dirs[split]}) has no labelled utterance")
    return conv, vocab


def check_data_dirs(data_dirs: Mapping[str, str | Path]) -> None:
    """Refuse, before any upstream runs, a split without its audio list or a task's label file."""
    for split in SPLITS:
        d = Path(data_dirs[split])
        missing = [name for name in ("wav.scp", *(f for f, _, _ in PROBE_TASKS.values())) if not (d / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{d}: no {', '.join(missing)}; the {split} split of the probe tasks needs wav.scp and "
                                    f"the labels {', '.join(f for f, _, _ in PROBE_TASKS.values())} (the mini corpus's "
                                    "data stage writes them)")


def chance_levels(data_dirs: Mapping[str, str | Path]) -> dict[str, float]:
    """Chance level (%) of every task on the test split: one over the number of classes of the utterance
    tasks (``_none_`` left out), and the 100 % PER of an empty output for ``pr``."""
    out = {}
    for task, (label_file, _, _) in PROBE_TASKS.items():
        if task == "pr":
            out[task] = 100.0
            continue
        classes = {lab for lab in read_kaldi_map(Path(data_dirs["test"]) / label_file).values() if lab != NONE_LABEL}
        if not classes:
            raise ValueError(f"{Path(data_dirs['test']) / label_file}: no labelled utterance")
        out[task] = 100.0 / len(classes)
    return out


def _score(model: nn.Module, task: str, batches: Sequence[tuple[Tensor, Tensor, list]]) -> float:
    model.eval()
    correct = total = 0
    hyps, refs = [], []
    with torch.no_grad():
        for x, lengths, labels in batches:
            logits = model(x, lengths)
            if task == "pr":
                hyps += greedy_ctc(logits, lengths)
                refs += labels
            else:
                correct += int((logits.argmax(-1) == torch.tensor(labels)).sum())
                total += len(labels)
    return error_rate(hyps, refs) if task == "pr" else 100.0 * correct / total


def _loss(task: str, logits: Tensor, lengths: Tensor, labels: list) -> Tensor:
    if task != "pr":
        return F.cross_entropy(logits, torch.tensor(labels))
    targets = [torch.tensor(t) for t in labels]
    return F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), torch.cat(targets), lengths,
                      torch.tensor([len(t) for t in targets]), zero_infinity=True)


def fit_probe(task: str, features: Mapping[str, Features], data_dirs: Mapping[str, str | Path], seed: int,
              config: ProbeConfig | None = None) -> dict:
    """Train the ``task`` downstream on ``features[train]``, keep the best dev epoch, score it on test.
    Returns ``{"metric", "test", "dev", "best_epoch", "layer_weights"}``."""
    config = config or ProbeConfig()
    dirs = {k: Path(v) for k, v in data_dirs.items()}
    parts, vocab = task_splits(task, features, dirs)
    higher = PROBE_TASKS[task][2]
    torch.manual_seed(seed)
    mean, std = layer_stats(parts["train"].states)
    cls = FrameProbe if task == "pr" else UtteranceProbe
    model = cls(features["train"].num_layers, features["train"].dim, config.hidden_dim, len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    batches = {split: make_batches(part.states, part.labels, config.batch_size, mean, std) for split, part in parts.items()}
    best = (-math.inf, -1, None)
    for epoch in range(config.pr_epochs if task == "pr" else config.epochs):
        model.train()
        for i in torch.randperm(len(batches["train"]), generator=gen).tolist():
            x, lengths, labels = batches["train"][i]
            loss = _loss(task, model(x, lengths), lengths, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        dev = _score(model, task, batches["dev"])
        if (dev if higher else -dev) >= best[0]:  # a tie keeps the later, better trained epoch
            best = (dev if higher else -dev, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    return {"metric": PROBE_TASKS[task][1], "test": _score(model, task, batches["test"]),
            "dev": best[0] if higher else -best[0], "best_epoch": best[1],
            "layer_weights": model.layer_weights().tolist()}
