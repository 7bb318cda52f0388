"""Synthesize the mini speech corpus (LibriSpeech layout, espeak-ng voices).

``python -m audio_compress.bin.make_mini_corpus --out DIR [--seed N] [--num_speakers 10]
[--utts_per_speaker 24,8,8] [--num_workers N] [--force] [--preset plain|rich] [--pitch_jitter N]
[--rate_jitter X] [--noise_prob P] [--snr_db LO,HI] [--reverb_prob P] [--rt60 LO,HI]``

Writes ``DIR/LibriSpeech/{train-mini,dev-mini,test-mini}`` and ``DIR/LibriSpeech/corpus.json``;
an identical existing corpus is kept. Prepare it with
``python -m audio_compress.bin.prepare_librispeech --root DIR --subsets train-mini,dev-mini,test-mini``.
See :func:`audio_compress.data.mini_corpus.make_mini_corpus`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from audio_compress.data.mini_corpus import (
    DEFAULT_UTTS_PER_SPEAKER,
    RICH,
    SPLITS,
    EspeakNotFoundError,
    Variation,
    make_mini_corpus,
)

PRESETS = {"plain": Variation(), "rich": RICH}


def _pair(text: str) -> tuple[float, float]:
    values = [float(x) for x in text.split(",")]
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}")
    return values[0], values[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output root (gets LibriSpeech/ inside)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_speakers", type=int, default=10)
    p.add_argument("--utts_per_speaker", default=",".join(str(DEFAULT_UTTS_PER_SPEAKER[s])
                                                          for s in SPLITS),
                   help=f"utterances per speaker for {','.join(SPLITS)} (comma-separated)")
    p.add_argument("--num_workers", type=int, default=None, help="synthesis threads")
    p.add_argument("--force", action="store_true", help="regenerate even if up to date")
    p.add_argument("--preset", default="plain", choices=sorted(PRESETS),
                   help="per-utterance variation: plain (none) or rich (pitch, rate, noise, reverberation); "
                        "the options below override single values")
    p.add_argument("--pitch_jitter", type=int, default=None, help="+- espeak-ng pitch around the speaker's")
    p.add_argument("--rate_jitter", type=float, default=None, help="relative +- rate around the speaker's")
    p.add_argument("--noise_prob", type=float, default=None, help="probability of additive coloured noise")
    p.add_argument("--snr_db", type=_pair, default=None, help="SNR range of the noise, LOW,HIGH in dB")
    p.add_argument("--reverb_prob", type=float, default=None, help="probability of a synthetic room response")
    p.add_argument("--rt60", type=_pair, default=None, help="RT60 range of the room response, LOW,HIGH in seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        counts = [int(x) for x in args.utts_per_speaker.split(",")]
    except ValueError:
        parser.error(f"--utts_per_speaker must be {len(SPLITS)} integers, got "
                     f"{args.utts_per_speaker!r}")
    if len(counts) != len(SPLITS):
        parser.error(f"--utts_per_speaker needs {len(SPLITS)} numbers ({','.join(SPLITS)})")
    names = [f.name for f in dataclasses.fields(Variation)]
    try:
        variation = dataclasses.replace(PRESETS[args.preset],
                                        **{k: getattr(args, k) for k in names if getattr(args, k) is not None})
        corpus = make_mini_corpus(args.out, seed=args.seed, num_speakers=args.num_speakers,
                                  utts_per_speaker=dict(zip(SPLITS, counts)),
                                  num_workers=args.num_workers, force=args.force, variation=variation)
    except (EspeakNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    s = corpus.summary
    state = "up to date, kept" if corpus.reused else "generated"
    print(f"mini corpus {state}: {corpus.librispeech_dir} (seed {s['config']['seed']}, "
          f"{len(s['speakers'])} speakers, espeak-ng {s['config']['espeak_ng_version']})")
    for split, n in s["counts"]["per_split"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in s["counts"]["per_kind"][split].items())
        print(f"  {split}: {n} utterances ({kinds}), {s['counts']['seconds'][split] / 3600:.3f} h")
    print(f"  total: {s['total_utterances']} utterances; summary in "
          f"{corpus.librispeech_dir / 'corpus.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
