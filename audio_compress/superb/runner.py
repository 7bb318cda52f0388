"""Process entry point that runs s3prl's legacy SUPERB runner (``run_downstream.py``) with our
upstreams registered.

Usage (normally launched by :func:`audio_compress.superb.pipeline.run_task` in a subprocess)::

    python -m audio_compress.superb.runner [--s3prl_root DIR] [--record FILE] \\
        -m train -u star_local -k exp/x/student.pt -d speech_commands -c ks.yaml -p EXPDIR \\
        --device cpu -o "config.a=1,,config.b='x'" \\
        [--then [--record FILE] -m evaluate -e EXPDIR/dev-best.ckpt -t test --device cpu ...]

Everything except the wrapper options below is ``run_downstream.py``'s own command line. Each
``--then`` starts another invocation of ``run_downstream.main()`` in the same process (train,
then evaluate, without paying the s3prl import twice); each invocation parses its own
arguments, so ``--device`` must be given again for evaluation (s3prl restores every argument
from the checkpoint except mode, split, overrides, backend, local_rank and device).

This module must be the process's main script (or run in a dedicated subprocess): s3prl's
``main()`` replaces ``builtins.isinstance`` for the whole process, and registration of our
upstreams (``audio_compress.upstream.register``) is per process. Under ``torchrun`` every
worker runs this module, so every worker registers. DDP spellings: ``--local_rank N``,
``--local_rank=N``, ``--local-rank N`` / ``--local-rank=N`` (``torch.distributed.launch``) and
the ``LOCAL_RANK`` environment variable (``torchrun``) all become s3prl's ``--local_rank N``.

Wrapper options (stripped before s3prl parses the rest):

* ``--s3prl_root DIR``: an s3prl git checkout (``tools/s3prl``); its
  ``s3prl/downstream/ctc/corpus`` package (missing from the PyPI wheel) is used by the ``ctc``
  downstream (PR, SF). Without it the ``libriphone`` corpus comes from
  :mod:`audio_compress.superb.ctc_corpus` (LibriSpeech layout + lexicon files).
* ``--record FILE`` (per invocation): write every scalar the downstream expert logs
  (``logger.add_scalar(tag, value, step)``, which is how every expert reports its metrics) to
  ``FILE`` as JSON. The pipeline reads the metrics from there.
* ``--or_latest`` (per invocation, with ``-e CKPT``): when ``CKPT`` does not exist (a best-on-dev
  checkpoint is only written when the dev metric improves at least once), evaluate the newest
  ``states-*.ckpt`` of the same folder instead, with a warning.
* ``--probe -u NAME [-k CKPT] [-g MODEL_CONFIG]``: print ``{"num_layers": N, ...}`` of the
  upstream's ``hidden_states`` as JSON and exit (QbE scores every layer; the SUPERB CLI's
  preflight loads released checkpoints this way).
* ``--trust`` (anywhere): our upstreams (``audio_compress.upstream``) unpickle checkpoint files
  fully (their ``trust=True``), which can run code in them. s3prl calls an upstream with ``ckpt``,
  ``model_config`` and ``refresh`` only, so the flag is bound into the registered factories.

The run-time fixes to s3prl 0.4.18 (no files of s3prl are edited) are listed and applied in
:mod:`audio_compress.superb.s3prl_patches`.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from audio_compress.superb.s3prl_patches import RECORDER, EmptyDataloaderError, ScalarRecorder, install_fixes

__all__ = ["main", "split_invocations", "normalize_local_rank", "resolve_or_latest", "probe_upstream",
           "pop_trust", "trust_registered_upstreams", "ScalarRecorder", "RECORDER", "EmptyDataloaderError"]

THEN = "--then"
TRUST = "--trust"


def split_invocations(argv: Sequence[str]) -> tuple[dict, list[tuple[dict, list[str]]]]:
    """Split the wrapper command line into global options and ``(per-invocation options,
    s3prl_argv)`` pairs separated by ``--then``."""
    options: dict = {"s3prl_root": None, "probe": False}
    groups: list[list[str]] = [[]]
    for tok in argv:
        if tok == THEN:
            groups.append([])
        else:
            groups[-1].append(tok)
    out: list[tuple[dict, list[str]]] = []
    for group in groups:
        rest: list[str] = []
        local = {"record": None, "or_latest": False}
        i = 0
        while i < len(group):
            tok = group[i]
            name, eq, value = tok.partition("=")
            if tok == "--or_latest":
                local["or_latest"] = True
            elif tok == "--probe":
                options["probe"] = True
            elif name in ("--record", "--s3prl_root"):
                if not eq:
                    if i + 1 >= len(group):
                        raise SystemExit(f"audio_compress.superb.runner: {name} needs a value")
                    value = group[i + 1]
                    i += 1
                if name == "--record":
                    local["record"] = value
                else:
                    options["s3prl_root"] = value
            else:
                rest.append(tok)
            i += 1
        if not rest:
            raise SystemExit("audio_compress.superb.runner: empty invocation (nothing between "
                             f"{THEN} separators); give run_downstream.py arguments")
        out.append((local, rest))
    return options, out


def pop_trust(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """``(whether --trust was given, argv without it)``."""
    argv = list(argv)
    return TRUST in argv, [tok for tok in argv if tok != TRUST]


def trust_registered_upstreams(names: Sequence[str]) -> None:
    """Bind ``trust=True`` into our registered s3prl factories ``names`` (s3prl never passes it)."""
    import functools

    import s3prl.hub as hub

    for name in names:
        setattr(hub, name, functools.partial(getattr(hub, name), trust=True))


def resolve_or_latest(argv: Sequence[str]) -> list[str]:
    """Replace a missing ``-e CKPT`` by the newest ``states-*.ckpt`` beside it."""
    argv = list(argv)
    for flag in ("-e", "--past_exp"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            i = argv.index(flag) + 1
            ckpt = Path(argv[i])
            if ckpt.exists():
                return argv
            states = sorted(ckpt.parent.glob("states-*.ckpt"),
                            key=lambda p: int("".join(c for c in p.stem if c.isdigit()) or 0))
            if not states:
                raise SystemExit(f"audio_compress.superb.runner: {ckpt} does not exist and "
                                 f"{ckpt.parent} has no states-*.ckpt to fall back to")
            print(f"[audio_compress] WARNING: {ckpt} does not exist (the dev metric never "
                  f"improved); evaluating the newest checkpoint {states[-1]} instead",
                  file=sys.stderr)
            argv[i] = str(states[-1])
            return argv
    return argv


def probe_upstream(argv: Sequence[str]) -> dict:
    """Hidden-state count and dims of ``-u NAME [-k CKPT]`` on one second of noise."""
    import argparse

    import torch
    from s3prl import hub

    p = argparse.ArgumentParser()
    p.add_argument("-u", "--upstream", required=True)
    p.add_argument("-k", "--upstream_ckpt")
    p.add_argument("-g", "--upstream_model_config")
    p.add_argument("--device", default="cpu")
    args, _ = p.parse_known_args(list(argv))
    model = getattr(hub, args.upstream)(ckpt=args.upstream_ckpt,
                                        model_config=args.upstream_model_config,
                                        refresh=False).to(args.device).eval()
    with torch.no_grad():
        out = model([torch.randn(16000, device=args.device)])
    states = out["hidden_states"]
    return {"upstream": args.upstream, "num_layers": len(states),
            "dims": [int(s.shape[-1]) for s in states],
            "downsample_rate": int(model.get_downsample_rates("hidden_states"))}


def normalize_local_rank(argv: Sequence[str], environ: dict | None = None) -> list[str]:
    """Rewrite ``--local-rank``/``--local_rank[=N]`` to ``--local_rank N``; add it from the
    ``LOCAL_RANK`` environment variable (torchrun) when absent."""
    environ = os.environ if environ is None else environ
    out: list[str] = []
    rank = None
    i = 0
    argv = list(argv)
    while i < len(argv):
        tok = argv[i]
        name, eq, value = tok.partition("=")
        if name in ("--local-rank", "--local_rank"):
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            rank = int(value)
        else:
            out.append(tok)
        i += 1
    if rank is None and environ.get("LOCAL_RANK") not in (None, ""):
        rank = int(environ["LOCAL_RANK"])
    if rank is not None:
        out += ["--local_rank", str(rank)]
    return out


def _is_leader() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def main(argv: Sequence[str] | None = None) -> int:
    """Register our upstreams, patch s3prl and run every invocation of the command line."""
    trust, argv = pop_trust(sys.argv[1:] if argv is None else argv)
    options, invocations = split_invocations(argv)

    from audio_compress.upstream import register

    names = register()
    if trust:
        trust_registered_upstreams(names)
    source = install_fixes(options["s3prl_root"])
    import s3prl.run_downstream as rd

    print(f"[audio_compress] registered s3prl upstreams: {', '.join(names)}"
          f"{' (trust: checkpoint files unpickled fully)' if trust else ''}; ctc corpus readers from {source}",
          file=sys.stderr)
    if options["probe"]:
        print(json.dumps(probe_upstream(invocations[0][1])))
        return 0
    original_isinstance = builtins.isinstance
    for local, s3prl_argv in invocations:
        record = local["record"]
        s3prl_argv = normalize_local_rank(s3prl_argv)
        if local["or_latest"]:
            s3prl_argv = resolve_or_latest(s3prl_argv)
        print(f"[audio_compress] run_downstream {' '.join(s3prl_argv)}", file=sys.stderr)
        RECORDER.reset()
        sys.argv = ["run_downstream.py", *s3prl_argv]
        builtins.isinstance = original_isinstance  # main() wraps it again; avoid nesting
        rd.main()
        if record and _is_leader():
            RECORDER.write(record, s3prl_argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
