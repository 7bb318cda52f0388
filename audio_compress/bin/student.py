"""Student checkpoints of any layout: describe them, convert them to this toolkit's format::

    python -m audio_compress.bin.student info SRC [--model_config YAML] [--trust [true|false]]
    python -m audio_compress.bin.student convert SRC --out DST [--model_config YAML] [--trust [true|false]]

SRC is this toolkit's student file, a released STaR / ARMHuBERT-family Lightning ``.ckpt``
(its training YAML is ``--model_config``, or found beside it) or an s3prl DistilHuBERT
checkpoint. ``info`` prints the layout, the architecture, its parameter count and the s3prl
entry to load it with; ``convert`` writes this toolkit's format (``audio_compress.models.
save_student``), recording the source layout, path and SHA-256 in the file's ``extra``.
Files are read without running code from them; ``--trust`` unpickles fully, only for a file
from a source you trust.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from audio_compress.export import sha256
from audio_compress.models import LoadedStudent, count_parameters, open_student, save_student
from compact_ssl.cli import command_parser, dispatch

PROG = "python -m audio_compress.bin.student"


def _parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    parser = command_parser(PROG, command, doc)
    parser.add_argument("src", help="student checkpoint of any layout")
    parser.add_argument("--model_config", default=None,
                        help="training YAML of a released Lightning checkpoint (default: <stem>.yaml beside it, "
                             "else the only *.yaml in its folder)")
    parser.add_argument("--trust", nargs="?", const="true", default="false", choices=["true", "false"],
                        help="unpickle fully (can run code): only for a file from a source you trust "
                             "(--trust alone means true)")
    return parser


def _open(args: argparse.Namespace) -> LoadedStudent:
    try:
        return open_student(args.src, model_config=args.model_config, trust=args.trust == "true")
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"ERROR: {err}") from err


def describe(loaded: LoadedStudent) -> str:
    """What ``info`` prints: layout, architecture, parameters and how to load it in s3prl."""
    config = loaded.model.config
    heads = f", {config.num_layers} projection heads to {config.proj_dim}" if config.proj_dim else ""
    if config.pred_layers:
        heads += f", prediction heads for teacher layers {config.pred_layers}"
    reuse = config.reuse_pattern.count(False)
    lines = [
        f"source: {loaded.source}",
        f"layout: {loaded.layout}",
        *([f"model_config: {loaded.model_config}"] if loaded.model_config else []),
        f"architecture: {config.name} ({config.num_layers} layers, d={config.embed_dim}, ffn={config.ffn_dim}, "
        f"{config.num_heads} heads, {reuse} attention-reuse layers{heads})",
        f"parameters: {count_parameters(loaded.model):,}",
        f"upstream entry: {loaded.entry}",
    ]
    if loaded.ignored_keys:
        lines.append(f"not loaded: {len(loaded.ignored_keys)} weights outside the student ({loaded.ignored_keys[0]}, ...)")
    extra = f", extra_conf={{'model_config': '{loaded.model_config}'}}" if loaded.model_config else ""
    lines.append(f"s3prl: S3PRLUpstream('{loaded.entry}', '{loaded.source}'{extra})")
    return "\n".join(lines)


def main_info(argv: list[str]) -> int:
    """``info``: print the layout, architecture, parameter count and s3prl entry of SRC."""
    args = _parser("info", main_info.__doc__).parse_args(argv)
    print(describe(_open(args)))
    return 0


def main_convert(argv: list[str]) -> int:
    """``convert``: write SRC in this toolkit's format at --out; ``extra`` records the source
    layout, path, SHA-256 and (Lightning releases) the YAML with its SHA-256."""
    parser = _parser("convert", main_convert.__doc__)
    parser.add_argument("--out", required=True, help="student checkpoint to write (this toolkit's format)")
    args = parser.parse_args(argv)
    loaded = _open(args)
    yaml_path = loaded.model_config
    extra = {
        "source_layout": loaded.layout,
        "source_path": str(loaded.source.resolve()),
        "source_sha256": sha256(loaded.source),
        "source_model_config": str(yaml_path.resolve()) if yaml_path else None,
        "source_model_config_sha256": sha256(yaml_path) if yaml_path else None,
    }
    out = save_student(loaded.model, args.out, extra=extra)
    print(f"Converted {loaded.source} ({loaded.layout}) -> {out}: {loaded.model.config.name}, "
          f"{count_parameters(loaded.model):,} parameters, s3prl entry {loaded.entry}")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {"info": main_info, "convert": main_convert}


def main(argv: list[str] | None = None) -> int:
    """Run the sub-command named by the first argument; returns the exit status."""
    return dispatch(PROG, __doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
