"""SUPERB scores, published rows and result tables (audio_compress.superb.score / .results).

The per-task rows are those of the ARMHuBERT table (sungnyun/ARMHuBERT assets/result.png,
shared/reference/speech.md 2.6) and the STaR table (assets/result_star.png, speech.md 1.6), as
stored in ``PUBLISHED``; the first test pins the inputs of the key rows to those tables so the
score checks below really use the printed numbers.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest

from audio_compress.bin import superb as cli
from audio_compress.superb import (
    METRIC_KEYS,
    PUBLISHED,
    REFERENCE_POINTS,
    MetricsFileError,
    MetricsOverrideWarning,
    MissingMetricsError,
    Score,
    UnknownMetricError,
    collect_metrics,
    overall_score,
    read_results,
    superb_score,
    write_results,
)
from audio_compress.superb.score import LOWER_IS_BETTER, TASKS, overall_values, superb_metric_scores, superb_task_scores

# Inputs copied from the tables (key order = METRIC_KEYS:
# PR_per ASR_wer KS_acc QbE_mtwv SID_acc ASV_eer SD_der IC_acc SF_f1 SF_cer ER_acc).
TABLE_ROWS = {
    # ARMHuBERT and STaR tables (identical rows)
    "HuBERT Base": (5.41, 6.42, 96.30, 0.0736, 81.42, 5.11, 5.88, 98.34, 88.53, 25.20, 64.92),
    "FBANK": (82.01, 23.18, 8.63, 0.0058, 8.5e-4, 9.56, 10.55, 9.1, 69.64, 52.94, 35.39),
    # ARMHuBERT table
    "DistilHuBERT": (16.27, 13.37, 95.98, 0.0511, 73.54, 8.55, 6.19, 94.99, 82.57, 35.59, 63.02),
    "ARMHuBERT": (7.72, 9.96, 96.88, 0.0635, 65.03, 5.68, 7.10, 97.07, 87.59, 26.06, 62.86),
    # STaR table
    "STaRHuBERT": (8.16, 9.35, 96.27, 0.0688, 77.58, 5.39, 6.05, 97.55, 87.94, 25.31, 63.01),
    "STaRHuBERT-L": (7.97, 8.91, 96.56, 0.0677, 78.66, 5.45, 5.83, 97.50, 88.01, 25.36, 63.48),
}

# Printed "Overall" values (FBANK: the ARMHuBERT table's 40.5; STaR's 46.5 is a typo).
PRINTED_OVERALL = {"HuBERT Base": 80.8, "STaRHuBERT-L": 79.8, "STaRHuBERT": 79.5,
                   "ARMHuBERT": 78.1, "DistilHuBERT": 75.9, "FBANK": 40.5}
# Printed STaR "General." (leaderboard SUPERB score) values.
PRINTED_SUPERB = {"HuBERT Base": 941, "STaRHuBERT-L": 896, "STaRHuBERT": 887}


def table(name: str) -> dict[str, float]:
    return dict(zip(METRIC_KEYS, TABLE_ROWS[name]))


@pytest.mark.parametrize("name", sorted(TABLE_ROWS))
def test_published_rows_match_tables(name):
    assert dict(PUBLISHED[name].metrics) == pytest.approx(table(name), rel=0, abs=0)
    assert set(PUBLISHED[name]) == set(METRIC_KEYS)
    assert PUBLISHED[name].params_m is not None and PUBLISHED[name].source


@pytest.mark.parametrize("name,printed", sorted(PRINTED_OVERALL.items()))
def test_overall_reproduces_printed_values(name, printed):
    score = overall_score(table(name))
    assert isinstance(score, Score) and score.kind == "overall" and not score.partial
    assert round(score.value, 1) == printed
    assert score.label == f"{printed:.1f}"
    assert float(score) == score.value


@pytest.mark.parametrize("name,printed", sorted(PRINTED_SUPERB.items()))
def test_superb_reproduces_star_general_score(name, printed):
    score = superb_score(table(name))
    assert score.kind == "superb" and not score.partial
    assert abs(score.value - printed) <= 2.0
    assert score.label == f"{score.value:.0f}"


def test_all_published_rows_reproduce_their_printed_scores():
    for name, row in PUBLISHED.items():
        o = overall_score(row)  # PublishedModel is a mapping of the 11 metrics
        assert abs(o.value - row.printed_overall) <= 0.05 + 1e-9, name
        if row.printed_superb is not None and name != "FBANK":
            assert abs(superb_score(row).value - row.printed_superb) <= 2.0, name


def test_reference_points_give_0_and_1000():
    fbank = {k: r.fbank for k, r in REFERENCE_POINTS.items()}
    sota = {k: r.sota for k, r in REFERENCE_POINTS.items()}
    assert superb_score(fbank).value == pytest.approx(0.0, abs=1e-9)
    assert superb_score(sota).value == pytest.approx(1000.0, abs=1e-9)
    # per metric too, including the lower-is-better ones
    assert all(v == pytest.approx(1000.0) for v in superb_metric_scores(sota).values())
    # the SOTA row printed in STaR (SID 90.33 vs the 90.3 reference point) and its overall 82.8
    assert superb_score(PUBLISHED["SOTA"]).value == pytest.approx(1000.0, abs=0.1)
    assert round(overall_score(PUBLISHED["SOTA"]).value, 1) == 82.8
    assert set(REFERENCE_POINTS) == set(METRIC_KEYS)
    assert REFERENCE_POINTS["QbE_mtwv"].sota == pytest.approx(7.36 / 100)


def test_hand_computed_overall_values():
    vals = overall_values({"PR_per": 10.0, "QbE_mtwv": 0.05, "KS_acc": 90.0})
    assert vals == pytest.approx({"PR_per": 90.0, "QbE_mtwv": 5.0, "KS_acc": 90.0})
    assert LOWER_IS_BETTER == {"PR_per", "ASR_wer", "ASV_eer", "SD_der", "SF_cer"}
    assert TASKS["SF"] == ("SF_f1", "SF_cer") and len(TASKS) == 10


def test_hand_computed_two_task_superb_score():
    # KS: 1000 * (69.0212 - 41.3826674) / (96.66 - 41.3826674) = 500 (halfway)
    ks = (41.3826674 + 96.66) / 2
    # SF: F1 at SOTA (1000) and CER at FBANK (0) -> task mean 500;
    # with PR at 3/4 of the way (lower is better): 82.01 - 0.75 * (82.01 - 3.53) -> 750
    pr = 82.01 - 0.75 * (82.01 - 3.53)
    m = {"KS_acc": ks, "SF_f1": 89.81, "SF_cer": 52.94, "PR_per": pr}
    tasks = superb_task_scores(m)
    assert tasks == pytest.approx({"KS": 500.0, "SF": 500.0, "PR": 750.0})
    s = superb_score({"KS_acc": ks, "PR_per": pr}, partial=True)
    assert s.value == pytest.approx((500.0 + 750.0) / 2)
    # SF counts once as a task (not twice as in the overall score)
    s2 = superb_score(m, partial=True)
    assert s2.value == pytest.approx((500 + 500 + 750) / 3)
    assert s2.coverage == "3/10 tasks"
    # no clipping: better than SOTA gives > 1000, worse than FBANK < 0
    assert superb_metric_scores({"KS_acc": 100.0})["KS_acc"] > 1000
    assert superb_metric_scores({"ASR_wer": 30.0})["ASR_wer"] < 0


def test_missing_metric_errors_name_it():
    m = table("HuBERT Base")
    del m["ASR_wer"], m["SF_cer"]
    for fn in (overall_score, superb_score):
        with pytest.raises(MissingMetricsError) as err:
            fn(m)
        assert isinstance(err.value, KeyError)
        assert "ASR_wer" in str(err.value) and "SF_cer" in str(err.value)
        assert err.value.missing == ("ASR_wer", "SF_cer")


def test_partial_scores_are_labelled():
    m = {k: v for k, v in table("HuBERT Base").items() if k in ("KS_acc", "SID_acc", "IC_acc")}
    o = overall_score(m, partial=True)
    assert o.partial and o.value == pytest.approx((96.30 + 81.42 + 98.34) / 3)
    assert o.label.startswith(f"{o.value:.1f} (partial: 3/11 metrics, missing PR_per, ASR_wer")
    assert "ER_acc" in o.label and "KS_acc" not in o.label
    s = superb_score(m, partial=True)
    assert s.partial and s.label.startswith(f"{s.value:.0f} (partial: 3/10 tasks, missing")
    # a complete row with partial=True is not partial
    full = overall_score(table("STaRHuBERT"), partial=True)
    assert not full.partial and full.label == "79.5" and full.missing == ()


def test_validation_errors():
    with pytest.raises(UnknownMetricError, match="KS_accuracy.*valid keys: PR_per"):
        overall_score({"KS_accuracy": 90.0}, partial=True)
    with pytest.raises(ValueError, match="SID_acc"):
        overall_score({"SID_acc": math.nan, "KS_acc": 90.0}, partial=True)
    with pytest.raises(ValueError, match="ASR_wer"):
        superb_score({"ASR_wer": math.inf}, partial=True)
    with pytest.raises(ValueError, match="QbE_mtwv.*fraction"):
        superb_score({"QbE_mtwv": 7.36}, partial=True)
    with pytest.raises(ValueError, match="KS_acc"):
        overall_score({"KS_acc": "high"}, partial=True)
    with pytest.raises(MissingMetricsError):
        overall_score({}, partial=True)


# ------------------------------------------------------------------------------------------
# results.py and the CLI
# ------------------------------------------------------------------------------------------

MINI = {"star_mini": {"KS_acc": 87.5, "SID_acc": 41.25, "IC_acc": 75.0, "PR_per": 38.2},
        "distilhubert_mini": {"KS_acc": 80.1, "SID_acc": 30.5, "PR_per": 45.3}}


def _check_png(path):
    import matplotlib.image as mpimg
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    img = mpimg.imread(str(path))
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200 and img.shape[2] in (3, 4)


def test_write_results_files(tmp_path):
    out = write_results(MINI, tmp_path / "res", title="Mini SUPERB", mini=True)
    assert set(out) == {"json", "md", "png"} and all(p.is_file() for p in out.values())
    _check_png(out["png"])

    doc = json.loads(out["json"].read_text())
    assert {u: d["metrics"] for u, d in doc["ours"].items()} == MINI
    assert read_results(tmp_path / "res")["ours"]["star_mini"]["metrics"] == MINI["star_mini"]
    ov = doc["ours"]["star_mini"]["overall"]
    assert ov["partial"] and ov["value"] == pytest.approx((87.5 + 41.25 + 75.0 + 61.8) / 4)
    assert "ASR_wer" in ov["missing"] and "partial" in ov["label"]
    assert list(doc["published"]) == ["HuBERT Base", "DistilHuBERT", "ARMHuBERT", "STaRHuBERT"]
    assert doc["published"]["HuBERT Base"]["metrics"] == table("HuBERT Base")
    assert doc["published"]["STaRHuBERT"]["overall"]["label"] == "79.5"

    md = out["md"].read_text()
    assert md.startswith("# Mini SUPERB\n")
    assert "not comparable" in md and "mini SUPERB" in md
    assert "| **star_mini** (ours) |" in md and "| **distilhubert_mini** (ours) |" in md
    for name, overall in (("HuBERT Base", "80.8"), ("DistilHuBERT", "75.9"),
                          ("ARMHuBERT", "78.1"), ("STaRHuBERT", "79.5")):
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        assert f"| {overall} |" in row
    assert "(partial 4/11 metrics)" in md and "missing ASR_wer" in md
    header = next(line for line in md.splitlines() if line.startswith("| Model"))
    assert "ASR WER↓" in header and "Overall" in header and "SUPERB" in header


def test_write_results_without_published_rows(tmp_path):
    out = write_results({"a": {"KS_acc": 90.0}}, tmp_path, published=(), partial=False)
    md = out["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Model"))
    assert header == "| Model | KS Acc↑ | Overall | SUPERB |"
    assert "| **a** (ours) | 90.00 | n/a | n/a |" in md
    assert "| HuBERT Base |" not in md and "Source of" not in md
    assert "not comparable to published SUPERB results" in md
    assert json.loads(out["json"].read_text())["published"] == {}
    _check_png(out["png"])
    with pytest.raises(KeyError, match="available"):
        write_results({"a": {"KS_acc": 90.0}}, tmp_path, published=("NoSuchModel",))
    with pytest.raises(UnknownMetricError):
        write_results({"a": {"KS": 90.0}}, tmp_path)


def _write_metric(path, upstream, task, metrics):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"upstream": upstream, "task": task, "metrics": metrics,
                                "extra": "ignored"}))
    return path


def test_collect_metrics_merges_and_overrides(tmp_path):
    a = _write_metric(tmp_path / "runs" / "ks" / "metrics.json", "up1", "KS", {"KS_acc": 80.0})
    b = _write_metric(tmp_path / "runs" / "sid" / "metrics.json", "up1", "SID",
                      {"SID_acc": 30.0})
    c = _write_metric(tmp_path / "runs" / "up2" / "metrics.json", "up2", "KS", {"KS_acc": 70.0})
    d = _write_metric(tmp_path / "later.json", "up1", "KS", {"KS_acc": 85.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert collect_metrics([a, b, c]) == {"up1": {"KS_acc": 80.0, "SID_acc": 30.0},
                                              "up2": {"KS_acc": 70.0}}
    with pytest.warns(MetricsOverrideWarning, match="KS_acc.*up1"):
        merged = collect_metrics([tmp_path / "runs", d])  # folder globbed for **/metrics.json
    assert merged["up1"] == {"KS_acc": 85.0, "SID_acc": 30.0}


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    ('["a"]', "JSON object"),
    ('{"upstream": "u", "metrics": {"KS_acc": 1}}', "task"),
    ('{"upstream": "u", "task": "KS", "metrics": {"KS_ac": 1}}', "KS_ac"),
    ('{"upstream": "u", "task": "KS", "metrics": {"KS_acc": null}}', "KS_acc"),
    ('{"upstream": "", "task": "KS", "metrics": {"KS_acc": 1}}', "upstream"),
])
def test_collect_metrics_malformed_files_name_the_file(tmp_path, content, match):
    bad = tmp_path / "bad_metrics.json"
    bad.write_text(content)
    with pytest.raises(MetricsFileError, match=match) as err:
        collect_metrics([bad])
    assert "bad_metrics.json" in str(err.value)
    with pytest.raises(FileNotFoundError):
        collect_metrics([tmp_path / "missing.json"])


def test_cli(tmp_path, capsys):
    _write_metric(tmp_path / "runs" / "a" / "metrics.json", "up1", "KS", {"KS_acc": 80.0})
    _write_metric(tmp_path / "runs" / "b" / "metrics.json", "up1", "IC", {"IC_acc": 60.0})
    rc = cli.main(["results", "--metrics", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                   "--title", "CLI test", "--published", "HuBERT Base,STaRHuBERT-L", "--mini"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "| **up1** (ours) |" in printed and "| STaRHuBERT-L |" in printed
    assert "| DistilHuBERT |" not in printed and "results.png" in printed
    assert (tmp_path / "out" / "results.md").read_text() in printed
    _check_png(tmp_path / "out" / "results.png")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli.main(["results", "--metrics", str(bad), "--out", str(tmp_path / "o2")]) == 1
    assert "bad.json" in capsys.readouterr().err
