"""Episodic few-shot evaluation of pretrained backbones (CD-FSL protocol): the episode sampler,
update methods (LP, FT, partial, augmentation, MixUp / CutMix, TTA), ReFine and the evaluator."""

from vision_ssl.fewshot.episodes import Episode, confidence_interval, iter_episodes, sample_episode, steps_per_episode
from vision_ssl.fewshot.evaluate import FewShotResult, evaluate_fewshot
from vision_ssl.fewshot.refine import default_refine_layers, rerandomize, resolve_layers
from vision_ssl.fewshot.update import UPDATE_PRESETS, UpdateConfig, finetune_episode, update_config

__all__ = ["UPDATE_PRESETS", "Episode", "FewShotResult", "UpdateConfig", "confidence_interval",
           "default_refine_layers", "evaluate_fewshot", "finetune_episode", "iter_episodes", "rerandomize",
           "resolve_layers", "sample_episode", "steps_per_episode", "update_config"]
