"""What the speech distillation recipe (``recipes/distill.sh``) reads from its config, and its teacher checks.

The config's ``student`` and ``teacher`` are the recipe's defaults (``--student`` / ``--teacher``
override them); the config's ``teacher`` also says which teacher family (transformers
``model_type``: hubert, wavlm, wav2vec2) its hyperparameters were written for, e.g. ``wavlm_base``
in ``conf/armwavlm_s_960h.yaml``::

    python -m audio_compress.bin.recipe_conf show --conf conf/armwavlm_s_960h.yaml
        armhubert_s wavlm_base                      # student, teacher (one line, for the shell's read)
    python -m audio_compress.bin.recipe_conf family --conf conf/armwavlm_s_960h.yaml
        wavlm
    python -m audio_compress.bin.recipe_conf check_teacher --conf conf/armwavlm_s_960h.yaml \\
        --teacher /data/WavLM-Base.pt

``check_teacher`` fails (exit 1, the message on stderr) when the teacher is neither an existing
file or folder nor a named architecture, or when its family differs from the config's. A fairseq /
unilm checkpoint file has no readable family before stage 2 converts it: the recipe checks the
converted folder after stage 2 (and before training when stage 2 is skipped).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from compact_ssl.cli import command_parser, dispatch
from compact_ssl.config import ConfigError, read_yaml

#: the released checkpoint of each family's Base teacher and where it comes from (named in the messages)
RELEASED_TEACHERS = {"hubert": "hubert_base_ls960.pt (fairseq)", "wavlm": "WavLM-Base.pt (microsoft/unilm)",
                     "wav2vec2": "wav2vec_small.pt (fairseq)"}


def _pass_weights(family: str | None) -> str:
    """``--teacher /path/to/<file> (<source>)`` for a family with known released weights, else ''."""
    return f"--teacher /path/to/{RELEASED_TEACHERS[family]}" if family in RELEASED_TEACHERS else ""


class RecipeConfError(ValueError):
    """A recipe config or teacher that the recipe cannot use; the message says what to change."""


def conf_values(conf: str | Path) -> tuple[str, str]:
    """``(student, teacher)`` of a distillation config (the recipe's defaults). Only the YAML is
    read here; the training entry point's ``--check`` validates the rest."""
    try:
        doc = read_yaml(conf)
    except (FileNotFoundError, ConfigError) as err:
        raise RecipeConfError(f"--conf {conf}: {err} (see conf/ of this recipe)") from err
    if not doc.get("student") or not doc.get("teacher"):
        raise RecipeConfError(f"--conf {conf}: needs 'student' and 'teacher' keys (the recipe's defaults)")
    return str(doc["student"]), str(doc["teacher"])


def teacher_family(spec: str) -> str | None:
    """The transformers ``model_type`` of a teacher source: a named architecture, or a folder with
    ``config.json``; ``None`` for a checkpoint file (known only once stage 2 has converted it).

    Raises :class:`RecipeConfError` when ``spec`` is none of a file, a folder or a named architecture.
    """
    path = Path(spec)
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise RecipeConfError(f"teacher folder {spec} has no config.json (not a transformers folder)")
        return json.loads(config.read_text()).get("model_type")
    if path.is_file():
        return None
    from audio_compress.teachers.configs import architecture_names, get_config  # transformers: only when needed

    if spec in architecture_names():
        return get_config(spec).model_type
    raise RecipeConfError(f"no such file or folder, and not a named architecture ({', '.join(architecture_names())})")


def check_teacher(conf: str | Path, teacher: str, label: str | None = None) -> str:
    """Check ``teacher`` against the family of the config's teacher; returns a note for the log.

    ``label`` names the teacher in messages (default ``--teacher <teacher>``, the recipe option).
    Raises :class:`RecipeConfError` naming the teacher, the config and what to pass instead.
    """
    label = label or f"--teacher {teacher}"
    _, declared = conf_values(conf)
    want = None if Path(declared).is_file() else teacher_family(declared)
    weights = _pass_weights(want)
    try:
        got = teacher_family(teacher)
    except RecipeConfError as err:
        hint = f"; {conf} distils from a {want} teacher: pass {weights}" if weights else ""
        raise RecipeConfError(f"{label}: {err}{hint}") from None
    if want and got and want != got:
        raise RecipeConfError(
            f"{label} is a {got} model, but {conf} distils from a {want} teacher (teacher: {declared}). "
            f"Pass the {want} weights ({weights or '--teacher PATH'}) or use a config written for a {got} teacher")
    if got is None:
        return f"{label}: a checkpoint file; stage 2 converts it, then its family is checked ({want or 'any'})"
    if not Path(teacher).exists():
        return (f"{label}: a named architecture with RANDOM weights (tests, mini recipes); the released "
                f"weights: {_pass_weights(got) or '--teacher PATH'}")
    return f"{label}: a {got} teacher, as {conf} expects"


def _show(argv: list[str]) -> int:
    p = command_parser("python -m audio_compress.bin.recipe_conf", "show", "Print the config's student and teacher.")
    p.add_argument("--conf", required=True)
    args = p.parse_args(argv)
    print(*conf_values(args.conf))
    return 0


def _family(argv: list[str]) -> int:
    p = command_parser("python -m audio_compress.bin.recipe_conf", "family",
                       "Print the teacher family (model_type) of the config's teacher ('unknown' for a checkpoint file).")
    p.add_argument("--conf", required=True)
    args = p.parse_args(argv)
    print(teacher_family(conf_values(args.conf)[1]) or "unknown")
    return 0


def _check_teacher(argv: list[str]) -> int:
    p = command_parser("python -m audio_compress.bin.recipe_conf", "check_teacher",
                       "Check a teacher source (or a prepared teacher folder) against the config's teacher family.")
    p.add_argument("--conf", required=True)
    p.add_argument("--teacher", required=True, help="named architecture, transformers folder or checkpoint file")
    p.add_argument("--label", help="how messages name the teacher (default: --teacher TEACHER)")
    args = p.parse_args(argv)
    print(check_teacher(args.conf, args.teacher, args.label))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return dispatch("python -m audio_compress.bin.recipe_conf", __doc__.split("\n\n")[0],
                        {"show": _show, "family": _family, "check_teacher": _check_teacher}, argv)
    except RecipeConfError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
