"""Fixed few-shot episodes: episodes given as lists of image files instead of being sampled from a
dataset (e.g. the 20 official Omniglot one-shot runs, :mod:`vision_ssl.fewshot.omniglot`), their
evaluation with an update method, and the raw-pixel nearest-neighbour baseline.

Episode list file (``fewshot_eval --episodes_file FILE``): UTF-8 text, tab-separated, with the
header line ``episode<TAB>role<TAB>path<TAB>label`` and then one line per image:

* ``episode``: episode id (any text without tabs); lines of one episode need not be contiguous,
  episodes keep the order in which their ids first appear;
* ``role``: ``support`` or ``query``;
* ``path``: image file, absolute or relative to the folder of the list file;
* ``label``: class name inside the episode. Every query label must have at least one support
  image; the episode labels ``0..n_way-1`` follow the order in which the class names first appear
  among the support lines.

Blank lines and lines starting with ``#`` are ignored. For example::

    episode	role	path	label
    run01	support	run01/training/class01.png	class01
    run01	support	run01/training/class02.png	class02
    run01	query	run01/test/item01.png	class02

Pixel nearest-neighbour baseline: every image is converted to RGB, resized to ``size`` x ``size``
(PIL bilinear, which averages over the source pixels when shrinking), scaled to [0, 1] and
flattened; each query takes the label of the support image at the smallest Euclidean distance
(ties: the earliest support image). This is the plain Euclidean distance, not the modified
Hausdorff distance of the pixel baseline in Lake et al. (Science 350(6266), 2015).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from vision_ssl.data.base import load_rgb
from vision_ssl.fewshot.episodes import confidence_interval
from vision_ssl.fewshot.evaluate import FewShotResult
from vision_ssl.fewshot.update import UpdateConfig, finetune_episode

HEADER = ("episode", "role", "path", "label")
ROLES = ("support", "query")


class EpisodeFileError(ValueError):
    """An episode list (or an official run folder) that cannot be read, with the place it went wrong."""


@dataclass(frozen=True)
class FixedEpisode:
    """One fixed episode: image files with episode labels ``0..n_way-1`` (``classes[i]`` names label i)."""

    name: str
    support: list[Path]
    support_labels: list[int]
    query: list[Path]
    query_labels: list[int]
    classes: list[str]

    def __post_init__(self) -> None:
        if not self.support or not self.query:
            raise EpisodeFileError(f"episode {self.name}: needs at least one support and one query image")
        if len(self.support) != len(self.support_labels) or len(self.query) != len(self.query_labels):
            raise EpisodeFileError(f"episode {self.name}: every image needs exactly one label")
        if set(self.support_labels) != set(range(len(self.classes))):
            raise EpisodeFileError(f"episode {self.name}: the support labels must be exactly 0..{len(self.classes) - 1}")
        if not set(self.query_labels) <= set(self.support_labels):
            raise EpisodeFileError(f"episode {self.name}: a query label has no support image")

    @property
    def n_way(self) -> int:
        """Classes of the episode."""
        return len(self.classes)

    @property
    def shots(self) -> int | None:
        """Support images per class, or None when the classes have different counts."""
        counts = set(Counter(self.support_labels).values())
        return counts.pop() if len(counts) == 1 else None

    @classmethod
    def from_named(cls, name: str, support: Sequence[tuple[Path, str]], query: Sequence[tuple[Path, str]]
                   ) -> FixedEpisode:
        """An episode from ``(path, class name)`` pairs; labels follow the first appearance of each
        class name in ``support``."""
        classes = list(dict.fromkeys(label for _, label in support))
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({label for _, label in query} - set(index))
        if unknown:
            raise EpisodeFileError(f"episode {name}: query label(s) {unknown} have no support image")
        return cls(name, [Path(p) for p, _ in support], [index[c] for _, c in support],
                   [Path(p) for p, _ in query], [index[c] for _, c in query], classes)


def read_episodes_file(path: str | Path, check_files: bool = True) -> list[FixedEpisode]:
    """The episodes of a list file (format: module docstring), in order of first appearance.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        EpisodeFileError: a malformed line (``file:line`` in the message), a query class without
            support images, or (``check_files``) an image file that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: episode list file not found")
    base = path.resolve().parent
    rows: dict[str, dict[str, list[tuple[Path, str]]]] = {}
    header_seen = False
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        where = f"{path}:{lineno}"
        if not header_seen:
            if tuple(f.strip() for f in fields) != HEADER:
                raise EpisodeFileError(f"{where}: the first line must be the header {'<TAB>'.join(HEADER)!r}, "
                                       f"got {line!r}")
            header_seen = True
            continue
        if len(fields) != len(HEADER):
            raise EpisodeFileError(f"{where}: expected {len(HEADER)} tab-separated fields ({', '.join(HEADER)}), "
                                   f"got {len(fields)}")
        episode, role, file, label = (f.strip() for f in fields)
        if role not in ROLES:
            raise EpisodeFileError(f"{where}: role must be one of {list(ROLES)}, got {role!r}")
        if not episode or not file or not label:
            raise EpisodeFileError(f"{where}: empty episode, path or label")
        image = Path(file) if Path(file).is_absolute() else base / file
        if check_files and not image.is_file():
            raise EpisodeFileError(f"{where}: image {image} not found")
        rows.setdefault(episode, {"support": [], "query": []})[role].append((image, label))
    if not rows:
        raise EpisodeFileError(f"{path}: no episodes (expected the header {'<TAB>'.join(HEADER)!r} and image lines)")
    try:
        return [FixedEpisode.from_named(name, r["support"], r["query"]) for name, r in rows.items()]
    except EpisodeFileError as err:
        raise EpisodeFileError(f"{path}: {err}") from err


def common_shape(episodes: Sequence[FixedEpisode]) -> tuple[int | None, int | None]:
    """``(n_way, shots)`` shared by all episodes; None where they differ."""
    ways = {e.n_way for e in episodes}
    shots = {e.shots for e in episodes}
    return (ways.pop() if len(ways) == 1 else None), (shots.pop() if len(shots) == 1 else None)


def pixel_vectors(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """``[n, 3 * size * size]`` raw-pixel vectors in [0, 1] (RGB, bilinear resize to ``size``)."""
    return np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float64).ravel()
                     for im in images]) / 255.0


def pixel_nn_predict(support: np.ndarray, support_labels: Sequence[int], query: np.ndarray) -> np.ndarray:
    """Label of the Euclidean-nearest support vector of each query vector (ties: lowest index)."""
    sq = (query ** 2).sum(1)[:, None] - 2.0 * query @ support.T + (support ** 2).sum(1)[None, :]
    return np.asarray(support_labels)[sq.argmin(1)]


def pixel_nn_accuracy(episode: FixedEpisode, size: int) -> float:
    """Query accuracy (%) of the raw-pixel nearest-neighbour baseline on one episode."""
    support = pixel_vectors([load_rgb(p) for p in episode.support], size)
    query = pixel_vectors([load_rgb(p) for p in episode.query], size)
    predicted = pixel_nn_predict(support, episode.support_labels, query)
    return 100.0 * float((predicted == np.asarray(episode.query_labels)).mean())


def _result(name: str, episodes: Sequence[FixedEpisode], accuracies: list[float]) -> FewShotResult:
    mean, half = confidence_interval(accuracies)
    return FewShotResult(name, common_shape(episodes)[1] or 0, mean, half, accuracies)


def evaluate_pixel_nn(episodes: Sequence[FixedEpisode], size: int, name: str = "pixel_nn") -> FewShotResult:
    """The pixel nearest-neighbour baseline on every episode (``shots`` 0 when the episodes differ)."""
    if not episodes:
        raise ValueError("evaluate_pixel_nn needs at least one episode")
    return _result(name, episodes, [pixel_nn_accuracy(e, size) for e in episodes])


def evaluate_fixed_episodes(backbone: nn.Module, episodes: Sequence[FixedEpisode], update: UpdateConfig, *,
                            name: str = "update", image_size: int, mean: Sequence[float], std: Sequence[float],
                            device: torch.device | str = "cpu", seed: int = 0,
                            initial_state: Mapping[str, Tensor] | None = None, progress: bool = True) -> FewShotResult:
    """Adapt a copy of ``backbone`` with ``update`` on each fixed episode's support set and score its queries.

    The fine-tuning randomness of episode ``i`` (head init, batch order, augmentation) is seeded
    from ``(seed, i)`` as in :func:`vision_ssl.fewshot.evaluate_fewshot`, so a run is reproducible.
    ``shots`` of the result is the support images per class shared by all episodes (0 when they differ).
    """
    if not episodes:
        raise ValueError("evaluate_fixed_episodes needs at least one episode")
    backbone = backbone.to(device).eval()
    accuracies: list[float] = []
    bar = tqdm(episodes, desc=f"{name} fixed episodes", disable=not progress)
    for i, ep in enumerate(bar):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i, 1]))
        torch.manual_seed(int(rng.integers(2**62)))
        outcome = finetune_episode(backbone, [load_rgb(p) for p in ep.support], ep.support_labels,
                                   [load_rgb(p) for p in ep.query], ep.query_labels, ep.n_way, update, image_size,
                                   mean, std, rng, device, initial_state)
        accuracies.append(outcome.accuracy)
        bar.set_postfix(acc=f"{np.mean(accuracies):.2f}")
    return _result(name, episodes, accuracies)
