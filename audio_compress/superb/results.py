"""SUPERB result tables: collect per-task metric files, score them, write JSON / Markdown / PNG.

* :func:`collect_metrics` reads the per-task ``metrics.json`` files written by the SUPERB runner
  (``{"upstream": str, "task": str, "metrics": {"KS_acc": 87.5, ...}, ...}``) and merges them per
  upstream.
* :func:`collect_released` reads which of those upstreams are released checkpoints (files
  published by others, evaluated with ``--released``) and where they came from (path, SHA-256).
* :func:`write_results` writes ``results.json``, ``results.md`` and ``results.png`` for a set of
  upstreams, next to selected published rows (:data:`audio_compress.superb.score.PUBLISHED`).

Three kinds of rows, never mixed up: our students ("(ours)"; ``ours`` in the JSON), released
checkpoints evaluated here ("(released)"; ``released``, with their source file and SHA-256), and
published rows copied from the papers (``published``). A released model without published numbers
(:data:`~audio_compress.superb.published.UNPUBLISHED`, e.g. STaRWavLM) gets a note, not a row.

Metric keys and units are those of :mod:`audio_compress.superb.score`; any subset of the 11 keys
works (mini SUPERB runs usually have only a few). Scores of incomplete rows are partial means and
are labelled as such.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from audio_compress.superb.published import ROWS_FOR_TEACHER, UNPUBLISHED
from audio_compress.superb.score import (
    METRIC_INFO,
    METRIC_KEYS,
    PUBLISHED,
    REFERENCE_POINTS,
    REFERENCE_POINTS_SOURCE,
    SOURCES,
    MissingMetricsError,
    Score,
    format_metric,
    get_published,
    overall_score,
    superb_score,
    validate_metrics,
)

__all__ = ["DEFAULT_PUBLISHED", "MetricsFileError", "MetricsOverrideWarning", "collect_metrics",
           "collect_released", "find_metric_files", "score_row", "render_markdown", "plot_results",
           "write_results", "read_results"]

DEFAULT_PUBLISHED: tuple[str, ...] = ROWS_FOR_TEACHER["hubert"]

#: what the results table calls a released checkpoint's row
RELEASED_MARK = "(released)"

RESULTS_SCHEMA = "audio_compress.superb.results/v1"


class MetricsFileError(ValueError):
    """A per-task metrics file that cannot be read or does not have the expected format."""


class MetricsOverrideWarning(UserWarning):
    """A metric of an upstream was given by more than one file; the later file wins."""


# --------------------------------------------------------------------------------------------
# Reading the runner's metric files
# --------------------------------------------------------------------------------------------

def find_metric_files(paths: Iterable[str | Path], pattern: str = "**/metrics.json") -> list[Path]:
    """Expand ``paths``: files are kept in the given order, a directory is replaced by its files
    matching ``pattern`` (sorted). Missing paths or directories without matches raise
    :class:`FileNotFoundError`."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.glob(pattern) if f.is_file())
            if not found:
                raise FileNotFoundError(f"no {pattern} files under {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"metrics file or folder not found: {p}")
    return out


def _read_record(path: Path) -> tuple[str, str, dict[str, float], dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise MetricsFileError(f"{path}: cannot read metrics file ({err})") from err
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise MetricsFileError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(obj, dict):
        raise MetricsFileError(f"{path}: expected a JSON object with 'upstream', 'task' and "
                               f"'metrics', got {type(obj).__name__}")
    missing = [k for k in ("upstream", "task", "metrics") if k not in obj]
    if missing:
        raise MetricsFileError(f"{path}: missing field(s) {', '.join(missing)} (expected "
                               f"{{'upstream': str, 'task': str, 'metrics': {{...}}}})")
    upstream, task, metrics = obj["upstream"], obj["task"], obj["metrics"]
    if not isinstance(upstream, str) or not upstream.strip():
        raise MetricsFileError(f"{path}: 'upstream' must be a non-empty string, got {upstream!r}")
    if not isinstance(task, str):
        raise MetricsFileError(f"{path}: 'task' must be a string, got {task!r}")
    if not isinstance(metrics, dict):
        raise MetricsFileError(f"{path}: 'metrics' must be an object of metric key -> number, "
                               f"got {type(metrics).__name__}")
    try:
        values = validate_metrics(metrics, where=str(path))
    except (KeyError, ValueError, TypeError) as err:
        raise MetricsFileError(str(err)) from err
    if not values:
        raise MetricsFileError(f"{path}: 'metrics' is empty")
    details = obj.get("details") or {}
    if not isinstance(details, dict):
        raise MetricsFileError(f"{path}: 'details' must be an object, got {type(details).__name__}")
    return upstream, task, values, details


def collect_metrics(paths: Iterable[str | Path]) -> dict[str, dict[str, float]]:
    """Merge per-task metric files into ``{upstream: {metric_key: value}}``.

    ``paths`` are files or folders (searched for ``**/metrics.json``). Files are merged in order;
    a metric given again for the same upstream by a later file overrides the earlier value with a
    :class:`MetricsOverrideWarning`. Malformed files raise :class:`MetricsFileError` naming the file.
    """
    merged: dict[str, dict[str, float]] = {}
    origin: dict[tuple[str, str], Path] = {}
    for path in find_metric_files(paths):
        upstream, task, values, _ = _read_record(path)
        row = merged.setdefault(upstream, {})
        for key, value in values.items():
            if key in row:
                warnings.warn(f"{key} of upstream {upstream!r}: {path} (task {task}) overrides "
                              f"{row[key]:g} from {origin[upstream, key]} with {value:g}",
                              MetricsOverrideWarning, stacklevel=2)
            row[key] = value
            origin[upstream, key] = path
    return {up: {k: row[k] for k in METRIC_KEYS if k in row} for up, row in merged.items()}


def _source(details: Mapping) -> dict | None:
    """Where a released row's checkpoint came from (``None`` for our students and hub upstreams)."""
    if not details.get("released"):
        return None
    return {"entry": details.get("upstream_name"), "ckpt": details.get("upstream_ckpt"),
            "sha256": details.get("upstream_sha256"), "model_config": details.get("upstream_model_config"),
            "model_config_sha256": details.get("upstream_model_config_sha256")}


def collect_released(paths: Iterable[str | Path]) -> dict[str, dict]:
    """``{upstream: source}`` of the upstreams that the runner marked as released checkpoints
    (``details.released``); ``source`` holds the s3prl entry, checkpoint and model-config paths and
    their SHA-256. Every metrics file of such an upstream must name the same files with the same
    hashes, and none may say it is not released: a row never mixes two checkpoints
    (:class:`MetricsFileError` naming both files otherwise)."""
    seen: dict[str, tuple[dict | None, Path]] = {}
    for path in find_metric_files(paths):
        upstream, _, _, details = _read_record(path)
        source = _source(details)
        if upstream in seen and seen[upstream][0] != source:
            first, where = seen[upstream]
            raise MetricsFileError(
                f"upstream {upstream!r}: {path} and {where} describe different checkpoints "
                f"({source} vs {first}); rerun the tasks of one of them (--force true) or give them other tags")
        seen[upstream] = (source, path)
    return {up: source for up, (source, _) in seen.items() if source is not None}


# --------------------------------------------------------------------------------------------
# Scoring rows
# --------------------------------------------------------------------------------------------

def score_row(metrics: Mapping[str, float], partial: bool = True) -> dict[str, Score | None]:
    """``{"overall": Score | None, "superb": Score | None}``; ``None`` when the row is incomplete
    and ``partial`` is False (the score is then undefined)."""
    out: dict[str, Score | None] = {}
    for kind, fn in (("overall", overall_score), ("superb", superb_score)):
        try:
            out[kind] = fn(metrics, partial=partial)
        except MissingMetricsError:
            out[kind] = None
    return out


def _score_json(score: Score | None) -> dict | None:
    return None if score is None else score.to_dict()


def _mini_caption(mini: bool | None, has_published: bool = True, subject: str = "Our rows") -> str:
    """``subject``: the rows evaluated here (ours and/or released checkpoints')."""
    pub = ("the published rows, which are full SUPERB results copied from the papers"
           if has_published else "published SUPERB results")
    if mini:
        return (f"{subject} come from the mini SUPERB (synthetic corpus): they are NOT comparable "
                f"to {pub}.")
    if mini is None:
        return (f"{subject} are comparable to published SUPERB results only when run on the full "
                f"SUPERB data; mini-corpus numbers are not comparable to {pub}.")
    return f"{subject} are full SUPERB results (same tasks and data as published SUPERB results)."


def _subject(upstreams: Iterable[str], released: Mapping[str, Mapping]) -> str:
    """How the caption names the rows evaluated here."""
    kinds = {up in released for up in upstreams}
    if kinds == {True}:
        return "The released checkpoints' rows"
    return "Our rows and the released checkpoints' rows" if True in kinds else "Our rows"


def _mark(up: str, released: Mapping[str, Mapping]) -> str:
    """``(released)`` for a released checkpoint's row, ``(ours)`` for our students."""
    return RELEASED_MARK if up in released else "(ours)"


def _released_note(up: str, source: Mapping) -> str:
    sha = source.get("sha256") or "unknown"
    text = (f"{_escape(up)} {RELEASED_MARK}: a released checkpoint (not one of our students, not a published "
            f"row) evaluated here through {source.get('entry')}: {source.get('ckpt')} (SHA-256 {sha[:16]}…)")
    if source.get("model_config"):
        text += f", model config {source['model_config']}"
    return text + "; full hashes in results.json."


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------

def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(ours: Mapping[str, Mapping[str, float]], scores: Mapping[str, Mapping],
                    published: Sequence[str], *, title: str, mini: bool | None,
                    params_m: Mapping[str, float] | None = None,
                    notes: Sequence[str] = (), released: Mapping[str, Mapping] | None = None,
                    unpublished: Sequence[str] = ()) -> str:
    """The Markdown document of :func:`write_results` (title, caption, table, notes).

    ``ours`` holds every row evaluated here; those in ``released`` (``{upstream: source}``, see
    :func:`collect_released`) are marked ``(released)``, the others ``(ours)``. ``unpublished``
    names models of :data:`~audio_compress.superb.published.UNPUBLISHED`: a note each, no row.
    """
    params_m = dict(params_m or {})
    released = dict(released or {})
    present = [k for k in METRIC_KEYS if any(k in m for m in ours.values())]
    keys = list(METRIC_KEYS) if published else present
    show_params = bool(published) or bool(params_m)
    header = ["Model"] + (["Params (M)"] if show_params else []) \
        + [METRIC_INFO[k].header for k in keys] + ["Overall", "SUPERB"]
    lines = [f"# {title}", "", _mini_caption(mini, bool(published), _subject(ours, released)), ""]
    lines += ["| " + " | ".join(header) + " |",
              "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]

    def add_row(name: str, metrics: Mapping[str, float], params: float | None,
                sc: Mapping[str, Score | None]) -> None:
        cells = [name]
        if show_params:
            cells.append("–" if params is None else f"{params:.2f}")
        cells += [format_metric(k, metrics.get(k)) for k in keys]
        cells += ["n/a" if sc[k] is None else sc[k].short_label for k in ("overall", "superb")]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")

    for name in published:
        row = get_published(name)
        add_row(name, row, row.params_m, score_row(row, partial=False))
    for up, metrics in ours.items():
        add_row(f"**{up}** {_mark(up, released)}", metrics, params_m.get(up), scores[up])

    lines += ["", "Notes:", ""]
    lines.append("- Overall: mean of the 11 paper-subset values (error rates as 100 - x, "
                 "QbE MTWV x 100), the ARMHuBERT/STaR convention. SUPERB: leaderboard score, "
                 "linear between FBANK (0) and SOTA (1000) per metric, averaged within and "
                 "then across the 10 tasks.")
    lines.append("- QbE MTWV is a fraction; all other metrics are percentages. "
                 "↑ higher is better, ↓ lower is better.")
    for up, sc in scores.items():
        parts = [s for s in (sc["overall"], sc["superb"]) if s is not None and s.partial]
        if parts:
            lines.append(f"- {_escape(up)} {_mark(up, released)}: partial scores, the mean over "
                         f"{parts[0].coverage} only, not comparable to full scores; missing "
                         f"{', '.join(parts[0].missing)}.")
        elif sc["overall"] is None:
            lines.append(f"- {_escape(up)} {_mark(up, released)}: incomplete, no score (partial scores disabled).")
    lines += [f"- {_released_note(up, released[up])}" for up in ours if up in released]
    if published:
        lines.append("- Published rows: metrics as printed in the papers; their Overall and "
                     "SUPERB columns are recomputed here from those metrics.")
        for src in dict.fromkeys(get_published(n).source for n in published):
            names = ", ".join(n for n in published if get_published(n).source == src)
            lines.append(f"- Source of {names}: {SOURCES.get(src, src)}.")
        for n in published:
            if get_published(n).note:
                lines.append(f"- {n}: {get_published(n).note}.")
    lines += [f"- {n}: no published SUPERB row; {UNPUBLISHED[n]}." for n in unpublished]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------

_Panel = tuple[str, str, dict[str, float], set[str]]  # key, title, upstream -> value, partial upstreams


def _panels(ours: Mapping[str, Mapping[str, float]], scores: Mapping[str, Mapping]) -> list[_Panel]:
    """One panel per metric present in ``ours``, then the aggregate scores that exist."""
    panels: list[_Panel] = []
    for k in METRIC_KEYS:
        if not any(k in m for m in ours.values()):
            continue
        info = METRIC_INFO[k]
        unit = " (%)" if info.unit == "%" else ""
        panels.append((k, f"{info.task} {info.name}{unit} {'↓' if info.lower_is_better else '↑'}",
                       {u: m[k] for u, m in ours.items() if k in m}, set()))
    for kind, label in (("overall", "Overall ↑"), ("superb", "SUPERB score ↑")):
        vals = {u: float(s[kind]) for u, s in scores.items() if s[kind] is not None}
        if vals:
            part = {u for u, s in scores.items() if s[kind] is not None and s[kind].partial}
            panels.append((kind, label + (" (partial)" if part else ""), vals, part))
    return panels


def _draw_panel(ax, panel: _Panel, upstreams: list[str], colors: list, named_ticks: bool) -> None:
    """Bars of one panel (partial scores hatched, missing upstreams marked n/a)."""
    key, label, vals, part = panel
    xs = [i for i, u in enumerate(upstreams) if u in vals]
    ys = [vals[upstreams[i]] for i in xs]
    bars = ax.bar(xs, ys, color=[colors[i] for i in xs], width=0.75,
                  edgecolor="black", linewidth=0.5)
    for b, i in zip(bars, xs):
        if upstreams[i] in part:
            b.set_hatch("//")
    fmt = "{:.0f}" if key == "superb" else ("{:.4f}" if key == "QbE_mtwv" else "{:.1f}")
    ax.bar_label(bars, labels=[fmt.format(y) for y in ys], fontsize=8, padding=2)
    for i, u in enumerate(upstreams):
        if u not in vals:
            ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8, color="0.4")
    ax.set_title(label, fontsize=10)
    ax.set_xticks(range(len(upstreams)))
    if named_ticks:
        ax.set_xticklabels(upstreams, fontsize=8, rotation=30, ha="right",
                           rotation_mode="anchor")
    else:
        ax.set_xticklabels([str(i + 1) for i in range(len(upstreams))], fontsize=8)
    ax.set_xlim(-0.6, len(upstreams) - 0.4)
    top = max([0.0] + ys)
    low = min([0.0] + ys)
    ax.set_ylim(low * 1.35 if low < 0 else 0.0, top * 1.18 if top > 0 else 1.0)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def plot_results(ours: Mapping[str, Mapping[str, float]], scores: Mapping[str, Mapping],
                 path: str | Path, *, title: str, mini: bool | None) -> Path:
    """Bar chart: one panel per metric present in ``ours`` plus the Overall score, one bar per
    upstream (shared colours and legend), value labels on the bars."""
    # Figure + Agg canvas, not pyplot: no global backend switch, no open figures left behind.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    path = Path(path)
    upstreams = list(ours)
    panels = _panels(ours, scores)
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    named_ticks = len(upstreams) <= 6  # names under the bars; otherwise numbers + legend
    longest = max(len(u) for u in upstreams)
    tick_h = 0.09 * min(longest, 28) if named_ticks else 0.2  # inches for rotated names
    sub = ("mini SUPERB (synthetic corpus; not comparable to published numbers)" if mini
           else "full SUPERB" if mini is False else "")
    leg_cols = min(len(upstreams), 4)
    leg_rows = math.ceil(len(upstreams) / leg_cols)
    title_h = 0.3 * (2 if sub else 1)
    header_h = 0.1 + title_h + 0.25 * leg_rows
    panel_w = max(2.8, 0.6 * len(upstreams) + 1.4)
    panel_h = 2.5 + 0.8 * tick_h
    fig_w, fig_h = panel_w * ncols, panel_h * nrows + header_h + 0.25
    fig = Figure(figsize=(fig_w, fig_h))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = [matplotlib.colormaps["tab10"](i % 10) for i in range(len(upstreams))]
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(ax, panel, upstreams, colors, named_ticks)
    fig.suptitle(title + (f"\n{sub}" if sub else ""), fontsize=11, y=1 - 0.15 / fig_h,
                 va="top")
    handles = [Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="black", linewidth=0.5)
               for c in colors]
    names = upstreams if named_ticks else [f"{i + 1}: {u}" for i, u in enumerate(upstreams)]
    fig.legend(handles, names, loc="upper center", ncol=leg_cols, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 1 - (0.15 + title_h) / fig_h))
    fig.tight_layout(rect=(0, 0.25 / fig_h, 1, 1 - header_h / fig_h))
    if any(p for *_, p in panels):
        fig.text(0.99, 0.06 / fig_h, "hatched: partial score (mean over the available metrics "
                 "only)", ha="right", va="bottom", fontsize=7, style="italic")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------

def write_results(metrics_by_upstream: Mapping[str, Mapping[str, float]], out_dir: str | Path,
                  title: str = "SUPERB results",
                  published: Sequence[str] = DEFAULT_PUBLISHED, partial: bool = True, *,
                  mini: bool | None = None, params_m: Mapping[str, float] | None = None,
                  notes: Sequence[str] = (), released: Mapping[str, Mapping] | None = None) -> dict[str, Path]:
    """Score our upstreams and write ``results.json``, ``results.md`` and ``results.png``.

    Args:
        metrics_by_upstream: ``{upstream: {metric_key: value}}``, any subset of the 11 keys
            (e.g. from :func:`collect_metrics`).
        out_dir: created if needed.
        title: heading of the Markdown file and the figure.
        published: names in :data:`~audio_compress.superb.score.PUBLISHED` to list above our
            rows (empty: none; the table then only has the metric columns we have). Names in
            :data:`~audio_compress.superb.published.UNPUBLISHED` (released models without
            published numbers, e.g. STaRWavLM) become notes saying so, never rows.
        partial: score incomplete rows as labelled partial means; if False they get no score.
        mini: True for mini SUPERB runs (synthetic corpus; the caption says the rows are not
            comparable to published ones), False for full SUPERB, None if unknown.
        params_m: optional parameter counts (millions) of our upstreams, for the table.
        notes: extra note lines for the Markdown file.
        released: ``{upstream: source}`` of the upstreams that are released checkpoints
            (:func:`collect_released`): marked ``(released)`` in the table and the figure, and
            written under ``released`` in the JSON with their ``source`` (path, SHA-256), apart
            from ``ours``.

    Returns ``{"json": Path, "md": Path, "png": Path}``.
    """
    if not metrics_by_upstream:
        raise ValueError("no upstreams given")
    if isinstance(published, str):
        published = [p.strip() for p in published.split(",") if p.strip()]
    published = list(dict.fromkeys(published))
    unpublished = [n for n in published if n in UNPUBLISHED]
    published = [n for n in published if n not in UNPUBLISHED]
    for name in published:
        get_published(name)  # error listing the valid names
    released = dict(released or {})
    stray = sorted(set(released) - set(map(str, metrics_by_upstream)))
    if stray:
        raise ValueError(f"released upstream(s) {stray} have no metrics")
    ours: dict[str, dict[str, float]] = {}
    for up, metrics in metrics_by_upstream.items():
        values = validate_metrics(metrics, where=f"upstream {up!r}")
        if not values:
            raise ValueError(f"upstream {up!r} has no metrics")
        ours[str(up)] = values
    scores = {up: score_row(m, partial) for up, m in ours.items()}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md",
             "png": out_dir / "results.png"}

    def row_json(up: str) -> dict:
        return {"metrics": ours[up], "params_M": (params_m or {}).get(up),
                "overall": _score_json(scores[up]["overall"]), "superb": _score_json(scores[up]["superb"])}

    doc = {
        "schema": RESULTS_SCHEMA,
        "title": title,
        "mini": mini,
        "caption": _mini_caption(mini, bool(published), _subject(ours, released)),
        "partial_scores": partial,
        "metric_keys": [k for k in METRIC_KEYS if any(k in m for m in ours.values())],
        "ours": {up: row_json(up) for up in ours if up not in released},
        "released": {up: {**row_json(up), "source": dict(released[up])} for up in ours if up in released},
        "unpublished": {n: UNPUBLISHED[n] for n in unpublished},
        "published": {n: {**get_published(n).to_json(),
                          "overall": _score_json(overall_score(get_published(n))),
                          "superb": _score_json(superb_score(get_published(n)))}
                      for n in published},
        "score_definitions": {
            "overall": "mean of the 11 paper-subset values; error rates (PR_per, ASR_wer, "
                       "ASV_eer, SD_der, SF_cer) as 100 - x, QbE_mtwv as 100 * x, accuracies and "
                       "SF_f1 unchanged (ARMHuBERT / STaR tables)",
            "superb": "SUPERB leaderboard score: 1000 * (x - FBANK) / (SOTA - FBANK) per metric, "
                      "no clipping, mean within task (SF: F1 and CER), mean over 10 tasks",
            "partial": "mean over the available metrics/tasks only; not comparable to full scores",
        },
        "reference_points": {"source": REFERENCE_POINTS_SOURCE,
                             "points": {k: {"fbank": r.fbank, "sota": r.sota}
                                        for k, r in REFERENCE_POINTS.items()}},
    }
    paths["json"].write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    paths["md"].write_text(render_markdown(ours, scores, published, title=title, mini=mini,
                                           params_m=params_m, notes=notes, released=released,
                                           unpublished=unpublished), encoding="utf-8")
    shown = {up: f"{up} {RELEASED_MARK}" if up in released else up for up in ours}
    plot_results({shown[up]: m for up, m in ours.items()}, {shown[up]: sc for up, sc in scores.items()},
                 paths["png"], title=title, mini=mini)
    return paths


def read_results(path: str | Path) -> dict:
    """Load a ``results.json`` written by :func:`write_results` (file or its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("schema") != RESULTS_SCHEMA:
        raise ValueError(f"{path}: not a results file of {RESULTS_SCHEMA}")
    return doc


# Names available for ``published``, re-exported for CLIs.
PUBLISHED_NAMES: tuple[str, ...] = tuple(PUBLISHED)
