"""Episode sampler, step counts and the 95 % interval of the episodic evaluator (reference 4.4, 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vision_ssl.backbones import build_backbone
from vision_ssl.fewshot import confidence_interval, finetune_episode, iter_episodes, steps_per_episode, update_config
from vision_ssl.fewshot.episodes import class_index, episode_rng, sample_episode

TARGETS = [c for c in range(8) for _ in range(40)]  # 8 classes x 40 images


@pytest.mark.parametrize("k", [1, 5, 20])
def test_episode_shapes_and_disjoint_sets(k):
    for ep in iter_episodes(TARGETS, n_way=5, k_shot=k, n_query=15, episodes=3, seed=0):
        assert len(ep.support) == 5 * k and len(ep.query) == 75
        assert ep.support_labels == [c for c in range(5) for _ in range(k)]
        assert ep.query_labels == [c for c in range(5) for _ in range(15)]
        assert not set(ep.support) & set(ep.query) and len(set(ep.support)) == 5 * k
        assert [TARGETS[i] for i in ep.support] == [ep.classes[y] for y in ep.support_labels]
        assert [TARGETS[i] for i in ep.query] == [ep.classes[y] for y in ep.query_labels]


def test_same_seed_same_episodes_and_nested_support_across_shots():
    a = list(iter_episodes(TARGETS, 5, 5, 15, 4, seed=3))
    b = list(iter_episodes(TARGETS, 5, 5, 15, 4, seed=3))
    one = list(iter_episodes(TARGETS, 5, 1, 15, 4, seed=3))
    assert a == b
    assert a != list(iter_episodes(TARGETS, 5, 5, 15, 4, seed=4))
    for five, single in zip(a, one):  # same classes and queries; the 1-shot support is inside the 5-shot one
        assert five.classes == single.classes and five.query == single.query
        assert set(single.support) <= set(five.support)
    # episode i does not depend on how many episodes are drawn
    assert list(iter_episodes(TARGETS, 5, 5, 15, 2, seed=3)) == a[:2]


def test_small_class_draws_with_replacement():
    by_class = class_index([0] * 4 + [1] * 30)
    ep = sample_episode(by_class, 2, 5, 15, episode_rng(0, 0))
    assert len(ep.support) == 10 and len(ep.query) == 30
    assert set(ep.support[:5] + ep.query[:15]) <= set(range(4)) or set(ep.support[5:] + ep.query[15:]) <= set(range(4))
    with pytest.raises(ValueError, match="5-way episodes need at least 5 classes"):
        sample_episode(by_class, 5, 1, 15, episode_rng(0, 0))


@pytest.mark.parametrize("k,steps", [(1, 200), (5, 700), (20, 2500)])
def test_steps_per_episode(k, steps):
    assert steps_per_episode(5 * k) == steps == 100 * math.ceil(5 * k / 4)


def test_finetune_takes_the_protocol_steps():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(10)]
    backbone = build_backbone("tiny_resnet").eval()
    labels = [0, 1, 2, 3, 4]
    lp = finetune_episode(backbone, images[:5], labels, images[5:], labels, 5, update_config({}), 16,
                          (0.5,) * 3, (0.5,) * 3, rng)
    ft = finetune_episode(backbone, images[:5], labels, images[5:], labels, 5,
                          update_config({"parts": ["full"], "epochs": 3}), 16, (0.5,) * 3, (0.5,) * 3, rng)
    assert lp.steps == 200 and ft.steps == 3 * 2
    assert 0.0 <= lp.accuracy <= 100.0 and lp.accuracy * 5 / 100 == pytest.approx(round(lp.accuracy * 5 / 100))


def test_confidence_interval_formula():
    x = np.random.default_rng(0).normal(60.0, 7.0, 600)
    mean, half = confidence_interval(x)
    s = x.std(ddof=1)
    assert mean == pytest.approx(x.mean()) and half == pytest.approx(0.0800167 * s, rel=1e-6)
    assert half == pytest.approx(1.96 * s / math.sqrt(600))
    assert confidence_interval([40.0, 60.0]) == pytest.approx((50.0, 1.96 * math.sqrt(200) / math.sqrt(2)))
    assert confidence_interval([55.0]) == (55.0, 0.0)
