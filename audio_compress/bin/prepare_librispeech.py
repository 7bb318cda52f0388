"""LibriSpeech -> Kaldi data dirs with every utterance checked.

``python -m audio_compress.bin.prepare_librispeech --root DIR --subsets dev-clean,test-clean
--out data [--combine_as NAME] [--nj N] [--on_bad_audio fail|skip] [--resample true|false]
[--check full|header] [--multichannel refuse|mean|first]``

``--root`` is the folder containing ``LibriSpeech/`` (or the ``LibriSpeech`` folder itself).
Each subset goes to ``<out>/<subset with - replaced by _>``; with ``--combine_as train_960``
all subsets go into one directory. ``--check full`` (the default) decodes every file once; the
results are cached in ``<out>/.audio_check_cache.json``, so a rerun over an unchanged corpus is
quick. See :func:`audio_compress.data.librispeech.prepare_librispeech`.
"""

from __future__ import annotations

import argparse
import sys

from audio_compress.data.kaldi import KaldiFormatError
from audio_compress.data.librispeech import BadAudioError, CorpusNotFoundError, prepare_librispeech
from compact_ssl.audio import MULTICHANNEL_POLICIES


def str2bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder containing LibriSpeech/<subset>/")
    p.add_argument("--subsets", required=True,
                   help="comma-separated subset names, e.g. train-clean-100,dev-clean")
    p.add_argument("--out", required=True, help="parent folder of the data dirs, e.g. data")
    p.add_argument("--combine_as", default=None,
                   help="write all subsets into one data dir of this name (e.g. train_960)")
    p.add_argument("--nj", type=int, default=4, help="parallel audio-check processes")
    p.add_argument("--on_bad_audio", choices=("fail", "skip"), default="fail",
                   help="fail: stop and list every bad file; skip: leave them out "
                        "(listed in <data dir>/bad_audio.txt)")
    p.add_argument("--resample", type=str2bool, default=False,
                   help="accept non-16 kHz files (resampled when loaded); default false")
    p.add_argument("--check", choices=("full", "header"), default="full",
                   help="full (default): decode every file, cached per file in <out>/.audio_check_cache.json; "
                        "header: read headers and file ends only (finds cut files, not NaN/Inf or damage inside)")
    p.add_argument("--multichannel", choices=MULTICHANNEL_POLICIES, default="refuse",
                   help="files with several channels: refuse (default: they are bad audio), mean (average "
                        "the channels) or first (keep channel 0); recorded in <data dir>/multichannel.txt")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    subsets = [s for s in args.subsets.split(",") if s]
    try:
        summaries = prepare_librispeech(
            args.root, subsets, args.out, combine_as=args.combine_as or None, nj=args.nj,
            on_bad_audio=args.on_bad_audio, resample=args.resample, check=args.check,
            multichannel=args.multichannel, progress=not args.no_progress)
    except (CorpusNotFoundError, BadAudioError, KaldiFormatError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    for s in summaries:
        skipped = f", skipped {s.num_bad} (see {s.bad_audio_path})" if s.num_bad else ""
        extra = f", extra files: {' '.join(s.extra_files)}" if s.extra_files else ""
        print(f"{s.name}: {s.num_utts} utterances, {s.num_speakers} speakers, {s.hours:.3f} h "
              f"from {','.join(s.subsets)}{skipped}{extra} -> {s.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
