"""The update-method study: one YAML table of update methods x shots drives the grid, and the
results become a Markdown / JSON table and a plot of accuracy vs shots per method.

Table layout (every key optional)::

    n_way: 5
    shots: [1, 5, 20]
    queries: 15
    episodes: 600
    seed: 0
    split: all              # target split the episodes are drawn from
    image_size: null        # null: the checkpoint's pretraining size (plain weights: 224)
    defaults: {epochs: 100} # UpdateConfig fields shared by every row
    updates:                # row name -> UpdateConfig fields (vision_ssl.fewshot.update)
      lp: {parts: [head]}
      ft: {parts: [full]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from compact_ssl.config import load_yaml_config
from vision_ssl.eval.baselines import BASELINE_LABELS
from vision_ssl.fewshot.update import UpdateConfig, update_config


@dataclass
class StudyConfig:
    """Episode settings and the named update methods of a study."""

    n_way: int = 5
    shots: list[int] = field(default_factory=lambda: [1, 5])
    queries: int = 15
    episodes: int = 600
    seed: int = 0
    split: str = "labeled"
    image_size: int | None = None
    defaults: dict = field(default_factory=dict)
    updates: dict = field(default_factory=lambda: {"lp": {"parts": ["head"]}, "ft": {"parts": ["full"]}})

    def __post_init__(self) -> None:
        if not self.updates:
            raise ValueError("study: 'updates' needs at least one row")
        if not self.shots or min(self.shots) < 1:
            raise ValueError(f"study: shots must be positive, got {self.shots}")
        self.update_table()  # fail at load time on a bad row

    def update_table(self) -> dict[str, UpdateConfig]:
        """Row name -> its :class:`UpdateConfig` (``defaults`` overlaid by the row), in table order."""
        return {name: update_config({**self.defaults, **(row or {})}, f"study.updates.{name}")
                for name, row in self.updates.items()}

    def probe_update(self) -> tuple[str, UpdateConfig]:
        """Name and config of the baselines' update: the table's ``lp`` row, else its ``defaults``
        with only the new head trained (no ReFine), named ``lp``."""
        table = self.update_table()
        if "lp" in table:
            return "lp", table["lp"]
        return "lp", update_config({**self.defaults, "parts": ["head"], "refine": False}, "study.defaults (baseline lp)")


def load_study(path: str | Path | None, overrides: list[str] | None = None) -> StudyConfig:
    """A :class:`StudyConfig` from YAML plus ``key.sub=value`` overrides (e.g. ``defaults.epochs=10``)."""
    return load_yaml_config(StudyConfig, path, overrides, where="study")


def _with_tta_rows(results: list[dict]) -> list[dict]:
    """``results`` plus, after an entry with several TTA view counts, one row per count
    (update ``"<name> [tta n]"``: the mean logits of the first n query views)."""
    rows = []
    for r in results:
        rows.append(r)
        rows += [{**t, "update": f"{r['update']} [tta {t['views']}]", "shots": r["shots"]} for t in r.get("tta", [])]
    return rows


def _baseline_rows(summary: dict) -> list[dict]:
    """The summary's baseline entries with table labels (``baseline: <kind label> (<update>)``)."""
    return [{**r, "update": f"baseline: {BASELINE_LABELS[r['baseline']]}"
             + ("" if r["baseline"] == "pixel_nn" else f" ({r['update']})")} for r in summary.get("baselines", [])]


def to_markdown(summaries: list[dict]) -> str:
    """Markdown table: one row per (dataset, update), one column per shot count, ``mean ± ci95``;
    an update evaluated at several TTA view counts gets one more row per count. Below each
    dataset's updates: its baseline rows (``baselines`` of the summary) and the chance row
    (``chance``, the same in every shot column)."""
    shots = sorted({r["shots"] for s in summaries for r in s["results"] + s.get("baselines", [])})
    lines = ["| dataset | update | " + " | ".join(f"{k}-shot" for k in shots) + " |",
             "|---|---|" + "---|" * len(shots)]
    for summary in summaries:
        cells: dict[str, dict[int, dict]] = {}
        for r in _with_tta_rows(summary["results"]) + _baseline_rows(summary):
            cells.setdefault(r["update"], {})[r["shots"]] = r
        for update, by_shot in cells.items():
            row = [f"{by_shot[k]['mean']:.2f} ± {by_shot[k]['ci95']:.2f}" if k in by_shot else "–" for k in shots]
            lines.append(f"| {summary['dataset']} | {update} | " + " | ".join(row) + " |")
        if summary.get("chance") is not None:
            lines.append(f"| {summary['dataset']} | chance (1/{summary['n_way']}) | "
                         + " | ".join(f"{summary['chance']:.2f}" for _ in shots) + " |")
    episodes = sorted({r["episodes"] for s in summaries for r in s["results"] + s.get("baselines", [])})
    return "\n".join(lines) + f"\n\nAccuracy (%) ± 95 % interval over {', '.join(map(str, episodes))} episodes.\n"


def plot_accuracy_vs_shots(summaries: list[dict], path: str | Path) -> None:
    """PNG with one panel per dataset: accuracy vs shots (log scale) per update, 95 % bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summaries), figsize=(4.5 * len(summaries), 3.6), squeeze=False)
    for ax, summary in zip(axes[0], summaries):
        by_update: dict[str, list[dict]] = {}
        for r in summary["results"]:
            by_update.setdefault(r["update"], []).append(r)
        for update, rows in by_update.items():
            rows = sorted(rows, key=lambda r: r["shots"])
            ax.errorbar([r["shots"] for r in rows], [r["mean"] for r in rows], yerr=[r["ci95"] for r in rows],
                        marker="o", capsize=3, label=update)
        shots = sorted({r["shots"] for r in summary["results"]})
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(summary["dataset"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
