"""Build the feature caches of training configs:
``python -m audio_cls.bin.cache_features --config C [C ...] [--set data.train=...]``.

Computes the normalized fbank of every cycle of ``data.train`` and ``data.test`` once and stores
it under ``data.cache_dir`` keyed by the feature config and manifest; configs with the same
features share a cache, and re-runs reuse it.
"""

from __future__ import annotations

import argparse

from audio_cls.features import build_feature_cache, load_feature_cache
from audio_cls.tasks.config import load_config
from compact_ssl.config import add_override_argument


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", required=True, help="training YAML(s) (egs/*/*/conf/*.yaml)")
    add_override_argument(parser, "features.num_mel_bins=128")
    args = parser.parse_args(argv)
    for conf in args.config:
        config = load_config(conf, args.overrides)
        for manifest in (config.data.train, config.data.test):
            path = build_feature_cache(manifest, config.features, config.data.cache_dir)
            cache = load_feature_cache(path)
            print(f"{conf}: {manifest}: {cache.feats.shape[0]} cycles x {cache.feats.shape[1]} frames x "
                  f"{cache.feats.shape[2]} mel -> {path}")


if __name__ == "__main__":
    main()
