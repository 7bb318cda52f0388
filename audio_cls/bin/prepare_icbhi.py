"""ICBHI data preparation: ``python -m audio_cls.bin.prepare_icbhi --root R --out data``.

Reads the recordings and the official split under ``R`` (see :mod:`audio_cls.data.icbhi` for the
layouts found automatically), checks every annotation and audio header, and writes
``<out>/{train,test}/cycles.tsv`` plus ``<out>/counts.json``; prints cycles per class and split.
Each file is written atomically, and only after every check passed, so a failed preparation
leaves no half-written manifest. A cycle that cannot be cut (``0 <= start < end`` violated,
shorter than one sample at ``--sample_rate``, or starting after its recording ends) fails with the
annotation file and line, or with ``--bad_cycles skip`` is left out and listed in ``counts.json``
(``skipped_cycles``). ``--check_only true`` only locates the audio folder and the split file
(recipe stage 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audio_cls.data.icbhi import IcbhiError, find_audio_dir, find_split_file
from audio_cls.data.manifest import write_manifest
from audio_cls.data.prepare import BAD_CYCLES, MISSING_AUDIO, format_counts, prepare_icbhi
from compact_ssl.audio import AudioError
from compact_ssl.io import write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="ICBHI root (audio_and_txt_files/ or the unzipped database)")
    parser.add_argument("--split_file", default="", help="official split file (default: found under the root)")
    parser.add_argument("--out", default="data", help="output folder for the manifests")
    parser.add_argument("--missing_audio", default="fail", choices=MISSING_AUDIO,
                        help="split entries without audio: fail (default) or skip and list them")
    parser.add_argument("--bad_cycles", default="fail", choices=BAD_CYCLES,
                        help="cycles that cannot be cut (empty, shorter than one sample, starting after the recording): "
                             "fail (default, naming the annotation file and line) or skip and list them in counts.json")
    parser.add_argument("--sample_rate", type=int, default=16000,
                        help="rate the cycles will be cut at (features.sample_rate of the configs); a cycle must hold "
                             "at least one sample at it")
    parser.add_argument("--check_only", default="false", choices=["true", "false"])
    args = parser.parse_args(argv)
    try:
        if args.check_only == "true":
            audio_dir = find_audio_dir(args.root)
            split = Path(args.split_file) if args.split_file else find_split_file(args.root)
            if not split.is_file():
                raise IcbhiError(split, "split file not found")
            print(f"ICBHI audio: {audio_dir} ({len(list(audio_dir.glob('*.wav')))} .wav files); split: {split}")
            return
        corpus = prepare_icbhi(args.root, args.split_file or None, args.missing_audio, progress=True,
                               bad_cycles=args.bad_cycles, sample_rate=args.sample_rate)
    except (IcbhiError, AudioError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)
    out = Path(args.out)
    for split, records in corpus.cycles.items():
        write_manifest(records, out / split / "cycles.tsv")
    counts = corpus.counts()
    summary = {
        "audio_dir": str(corpus.audio_dir), "split_file": str(corpus.split_file), "counts": counts,
        "renamed": corpus.renamed, "skipped": corpus.skipped,
        "skipped_cycles": [cycle.to_dict() for cycle in corpus.skipped_cycles], "clipped_cycles": corpus.clipped,
        "unlisted_recordings": corpus.unlisted,
    }
    write_json(out / "counts.json", summary)
    print(f"audio: {corpus.audio_dir}\nsplit: {corpus.split_file}")
    if corpus.renamed:
        print(f"{len(corpus.renamed)} recordings found under another device suffix (e.g. {corpus.renamed[0][1]} "
              f"for {corpus.renamed[0][0]}), as in the official zip")
    if corpus.skipped:
        print(f"skipped {len(corpus.skipped)} split entries without audio (--missing_audio skip)")
    if corpus.skipped_cycles:
        print(f"skipped {len(corpus.skipped_cycles)} cycles that cannot be cut (--bad_cycles skip; listed in "
              f"{out / 'counts.json'} under skipped_cycles):")
        for cycle in corpus.skipped_cycles[:10]:
            print(f"  {cycle}")
        if len(corpus.skipped_cycles) > 10:
            print(f"  ... and {len(corpus.skipped_cycles) - 10} more")
    if corpus.clipped:
        print(f"{corpus.clipped} cycles end after their recording; they are clipped when cut")
    if corpus.unlisted:
        print(f"{len(corpus.unlisted)} recordings on disk are not in the split file and were ignored")
    print("cycles per class and split:")
    print(format_counts(counts))
    print(f"manifests: {out}/{{train,test}}/cycles.tsv")


if __name__ == "__main__":
    main()
