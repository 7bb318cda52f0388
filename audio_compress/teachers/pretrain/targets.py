"""Frame targets of HuBERT's iterations: k-means cluster ids of MFCC frames (the first iteration) or of
a hidden state of the previous iteration's model (every later one).

MFCCs are Kaldi-style (``torchaudio.compliance.kaldi.mfcc``: 25 ms window, 10 ms shift, 13
coefficients, ``snip_edges``) with first and second deltas: 39 dims at 100 Hz. MFCC frame ``j``
covers samples ``[160 j, 160 j + 400)``, so MFCC frame ``2 t`` covers exactly the 400-sample
receptive field of the model's frame ``t`` (``[320 t, 320 t + 400)``): the 20 ms model frames take
every second MFCC frame, computed with the deltas of the full 100 Hz sequence. That index always
exists: ``2 (num_frames(L) - 1) <= (L - 400) / 160``. A previous model's hidden states share the
model's frames by construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor
from torchaudio.compliance.kaldi import mfcc
from torchaudio.functional import compute_deltas
from tqdm import tqdm

from audio_compress.frames import HOP, SAMPLE_RATE, num_frames
from audio_compress.teachers.teacher import FrozenTeacher

#: MFCC frame shift in samples (10 ms): two MFCC frames per model frame.
MFCC_SHIFT = HOP // 2
MFCC_DIM = 39


def mfcc_frames(wav: Tensor, cmvn: bool = False) -> Tensor:
    """``(T, 39)`` MFCC + delta + delta-delta features of a 1-D 16 kHz waveform, one row per model
    frame (``T = num_frames(len(wav))``); ``cmvn``: each dimension normalised to zero mean and unit variance
    over the utterance (Kaldi's per-utterance ``apply-cmvn``), which removes a fixed channel's colouring."""
    frames = num_frames(int(wav.shape[-1]))
    if frames == 0:
        return torch.zeros(0, MFCC_DIM)
    # kaldi's mfcc reads int16-scaled audio; dither 0 keeps the targets deterministic
    base = mfcc(wav.reshape(1, -1).float() * 32768.0, sample_frequency=SAMPLE_RATE, frame_shift=10.0, frame_length=25.0,
                num_ceps=13, dither=0.0, use_energy=False)
    deltas = compute_deltas(base.T)
    feats = torch.cat([base.T, deltas, compute_deltas(deltas)], dim=0).T
    if cmvn:
        feats = (feats - feats.mean(dim=0)) / feats.std(dim=0, unbiased=False).clamp_min(1e-5)
    return feats[0 : 2 * frames : 2]


def layer_frames(teacher: FrozenTeacher, wav: Tensor, layer: int) -> Tensor:
    """``(T, D)`` hidden state ``layer`` of ``teacher`` on a 1-D waveform, run alone: in a padded batch a
    group-normed CNN would count the padding in its statistics, and the targets would depend on the batch."""
    return teacher(wav[None]).hidden_states[layer][0]


@dataclass
class ClusterTargets:
    """Fitted k-means codebook over standardised frames (MFCC or a model's hidden states).

    ``mean`` and ``std`` (D,) standardise a frame; ``centroids`` (K, D) live in the standardised space.
    """

    mean: Tensor
    std: Tensor
    centroids: Tensor

    @property
    def num_clusters(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, features: Tensor) -> Tensor:
        """Nearest centroid (Euclidean) of every row of ``features`` ``(N, D)``: ``(N,)`` long."""
        z = (features - self.mean) / self.std
        return torch.cdist(z.double(), self.centroids.double()).argmin(dim=1)

    def to_dict(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "std": self.std, "centroids": self.centroids}

    @classmethod
    def from_dict(cls, values: dict[str, Tensor]) -> ClusterTargets:
        return cls(values["mean"], values["std"], values["centroids"])


def fit_cluster_targets(features: Tensor, num_clusters: int, seed: int, max_frames: int | None = None) -> ClusterTargets:
    """Standardise ``features`` ``(N, D)`` and fit k-means (k-means++, seeded) on them.

    ``max_frames``: fit on a seeded random subset of at most this many rows (all rows when None).
    """
    if features.shape[0] < num_clusters:
        raise ValueError(f"k-means needs at least {num_clusters} frames, got {features.shape[0]}: "
                         "use fewer clusters or more training audio")
    features = features.double()
    if max_frames is not None and features.shape[0] > max_frames:
        keep = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(seed))[:max_frames]
        features = features[keep.sort().values]
    mean = features.mean(dim=0)
    std = features.std(dim=0).clamp_min(1e-5)
    kmeans = KMeans(n_clusters=num_clusters, init="k-means++", n_init=3, max_iter=100, random_state=seed)
    kmeans.fit(((features - mean) / std).numpy())
    return ClusterTargets(mean.float(), std.float(), torch.from_numpy(np.asarray(kmeans.cluster_centers_)).float())


def corpus_features(wavs: Iterable[Tensor], total: int | None = None, teacher: FrozenTeacher | None = None,
                    layer: int = 0, cmvn: bool = False) -> Tensor:
    """All model-rate frames of ``wavs``, concatenated ``(N, D)`` (with a progress bar): MFCC frames (39 dims,
    per-utterance CMVN with ``cmvn``), or hidden state ``layer`` of ``teacher`` when one is given."""
    if teacher is None:
        rows = [mfcc_frames(w, cmvn) for w in tqdm(wavs, total=total, desc="MFCC frames", unit="utt", leave=False)]
        return torch.cat(rows) if rows else torch.zeros(0, MFCC_DIM)
    bar = tqdm(wavs, total=total, desc=f"layer {layer} frames", unit="utt", leave=False)
    rows = [layer_frames(teacher, w, layer) for w in bar]
    return torch.cat(rows) if rows else torch.zeros(0, teacher.hidden_size)
