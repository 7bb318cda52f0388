"""Synthesize the mini ICBHI-format corpus: ``python -m audio_cls.bin.make_mini_icbhi --out corpus``.

Writes ``<out>/audio_and_txt_files/*.{wav,txt}`` and ``<out>/official_split.txt`` (see
:mod:`audio_cls.data.mini_corpus`); a ``done`` marker makes re-runs no-ops.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audio_cls.data.mini_corpus import make_mini_icbhi
from audio_cls.data.prepare import format_counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="corpus root to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_recordings", type=int, default=100,
                        help="recordings to write (2 per patient; 100 give 460 cycles, enough for the tiny AST to learn)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    done = out / "done"
    if done.is_file():
        print(f"{out}: mini corpus already present ({done.read_text().strip()})")
        return
    corpus = make_mini_icbhi(out, seed=args.seed, num_recordings=args.num_recordings, progress=True)
    print(f"Wrote {args.num_recordings} recordings to {out}/audio_and_txt_files and {corpus.split_file}")
    print(f"{len(corpus.renamed)} recordings stored under their zip device name (split says _Meditron)")
    print(format_counts(corpus.counts))
    done.write_text(f"seed={args.seed} recordings={args.num_recordings}\n")


if __name__ == "__main__":
    main()
