"""Omniglot's official one-shot classification runs as fixed episodes, and the data stage of the
fixed-episode recipe (``recipes/fixed_episodes.sh``).

Run layout (Lake et al.'s 20 runs of 20-way 1-shot within-alphabet classification,
``all_runs.zip`` of the ``python/`` folder of github.com/brendenlake/omniglot)::

    <runs>/runXX/training/classYY.png   the support set: one image per class
    <runs>/runXX/test/itemYY.png        the queries
    <runs>/runXX/class_labels.txt       one line per query: "runXX/test/itemYY.png runXX/training/classZZ.png"

A query's class is the training image named on its line; the support images are labelled in
sorted file order (class01 -> 0, ...). Every ``test/*.png`` must be listed in ``class_labels.txt``
and every listed file must exist. Only the last two parts of each listed path (``test/itemYY.png``,
``training/classZZ.png``) are used, so a renamed run folder still reads.

Data stage: ``python -m vision_ssl.fewshot.omniglot --omniglot DIR --out OUT [--background NAME]``
reads ``DIR`` = the ``python/`` folder (``all_runs.zip`` or an unpacked ``all_runs/``; for
pretraining also ``images_background_small1.zip`` or its unpacked folder) and writes
``OUT/runs/runXX/`` and ``OUT/background/{train,test}/<alphabet>__<character>/`` (an ImageFolder
tree of the background set: the last ``--test_drawers`` drawings of each character form ``test``,
used only by the pretraining's kNN monitor). A finished ``OUT`` with the same inputs is reused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zipfile
from pathlib import Path

from compact_ssl.io import staged_folder, write_json
from vision_ssl.fewshot.fixed_episodes import EpisodeFileError, FixedEpisode

LABELS_FILE = "class_labels.txt"
SUPPORT_DIR = "training"
QUERY_DIR = "test"
RUNS = "all_runs"
DONE = "omniglot.json"


def read_omniglot_run(run_dir: str | Path) -> FixedEpisode:
    """One official run folder as a :class:`FixedEpisode` named after the folder (layout: module docstring)."""
    run_dir = Path(run_dir)
    labels_file = run_dir / LABELS_FILE
    if not labels_file.is_file():
        raise EpisodeFileError(f"{run_dir}: {LABELS_FILE} not found (not an Omniglot one-shot run folder)")
    support = sorted((run_dir / SUPPORT_DIR).glob("*.png"))
    if not support:
        raise EpisodeFileError(f"{run_dir}: no {SUPPORT_DIR}/*.png support images")
    index = {p.name: i for i, p in enumerate(support)}
    query, query_labels = [], []
    for lineno, line in enumerate(labels_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{labels_file}:{lineno}"
        if len(parts) != 2:
            raise EpisodeFileError(f"{where}: expected 'runXX/{QUERY_DIR}/itemYY.png runXX/{SUPPORT_DIR}/classZZ.png', "
                                   f"got {line!r}")
        item, match = (Path(p) for p in parts)
        if item.parent.name != QUERY_DIR or match.parent.name != SUPPORT_DIR:
            raise EpisodeFileError(f"{where}: the first path must be in {QUERY_DIR}/ and the second in {SUPPORT_DIR}/")
        if not (run_dir / QUERY_DIR / item.name).is_file():
            raise EpisodeFileError(f"{where}: query image {run_dir / QUERY_DIR / item.name} not found")
        if match.name not in index:
            raise EpisodeFileError(f"{where}: support image {run_dir / SUPPORT_DIR / match.name} not found")
        query.append(run_dir / QUERY_DIR / item.name)
        query_labels.append(index[match.name])
    unlabelled = sorted({p.name for p in (run_dir / QUERY_DIR).glob("*.png")} - {p.name for p in query})
    if unlabelled:
        raise EpisodeFileError(f"{labels_file}: no line for query image(s) {unlabelled}")
    if len(set(query)) != len(query):
        raise EpisodeFileError(f"{labels_file}: a query image is listed twice")
    return FixedEpisode(run_dir.name, support, list(range(len(support))), query, query_labels,
                        [p.stem for p in support])


def read_omniglot_runs(root: str | Path) -> list[FixedEpisode]:
    """Every run folder (a sub-folder holding ``class_labels.txt``) of ``root``, in name order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: Omniglot runs folder not found (unpack all_runs.zip of "
                                "github.com/brendenlake/omniglot python/ there)")
    runs = sorted(p for p in root.iterdir() if (p / LABELS_FILE).is_file())
    if not runs:
        raise EpisodeFileError(f"{root}: no run folders (expected runXX/{LABELS_FILE}, runXX/{SUPPORT_DIR}/, "
                               f"runXX/{QUERY_DIR}/ as in all_runs.zip)")
    return [read_omniglot_run(p) for p in runs]


def _find(folder: Path, name: str) -> Path:
    """``folder/name.zip``, else the unpacked ``folder/name/``."""
    for candidate in (folder / f"{name}.zip", folder / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{folder}: neither {name}.zip nor {name}/ found (Omniglot's python/ folder, "
                            "github.com/brendenlake/omniglot)")


def _copy_pngs(source: Path, out: Path, prefix: str = "") -> None:
    """The PNGs under ``prefix`` of a zip file or folder ``source``, copied into ``out`` (relative paths kept)."""
    if source.is_dir():
        for png in source.rglob("*.png"):
            dest = out / png.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, dest)
        for labels in source.rglob(LABELS_FILE):
            shutil.copyfile(labels, out / labels.relative_to(source))
        return
    with zipfile.ZipFile(source) as z:
        members = [m for m in z.namelist() if m.startswith(prefix) and m.endswith((".png", LABELS_FILE))]
        for member in members:
            dest = out / member[len(prefix):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(member))


def export_background(tree: Path, out: Path, test_drawers: int) -> dict[str, int]:
    """``tree/<alphabet>/<character>/*.png`` as ``out/{train,test}/<alphabet>__<character>/``; the
    last ``test_drawers`` drawings (file-name order) of each character go to ``test``."""
    counts = {"train": 0, "test": 0, "classes": 0}
    for character in sorted(p for p in tree.glob("*/*") if p.is_dir()):
        images = sorted(character.glob("*.png"))
        if len(images) <= test_drawers:
            raise ValueError(f"{character}: {len(images)} drawings, need more than --test_drawers {test_drawers}")
        name = f"{character.parent.name}__{character.name}"
        cut = len(images) - test_drawers
        for split, chosen in (("train", images[:cut]), ("test", images[cut:])):
            (out / split / name).mkdir(parents=True, exist_ok=True)
            for png in chosen:
                shutil.copyfile(png, out / split / name / png.name)
            counts[split] += len(chosen)
        counts["classes"] += 1
    if not counts["classes"]:
        raise FileNotFoundError(f"{tree}: no <alphabet>/<character>/*.png folders")
    return counts


def prepare(omniglot: str | Path, out: str | Path, background: str = "", test_drawers: int = 4) -> dict:
    """Write ``out/runs`` (and ``out/background`` when ``background`` names a background set); returns
    the counts, also recorded in ``out/omniglot.json``. A finished ``out`` with the same inputs is kept."""
    omniglot, out = Path(omniglot), Path(out)
    if not omniglot.is_dir():
        raise FileNotFoundError(f"{omniglot}: Omniglot folder not found (the python/ folder of "
                                "github.com/brendenlake/omniglot, holding all_runs.zip)")
    params = {"omniglot": str(omniglot.resolve()), "background": background, "test_drawers": test_drawers}
    done = out / DONE
    if done.is_file() and json.loads(done.read_text()).get("params") == params:
        return json.loads(done.read_text())
    runs_source = _find(omniglot, RUNS)
    bg_source = _find(omniglot, background) if background else None
    with staged_folder(out) as tmp:
        _copy_pngs(runs_source, tmp / "runs")
        episodes = read_omniglot_runs(tmp / "runs")
        meta: dict = {"params": params, "runs": len(episodes), "queries": sum(len(e.query) for e in episodes)}
        if bg_source is not None:
            _copy_pngs(bg_source, tmp / "unpacked", "" if bg_source.is_dir() else f"{background}/")
            meta["background"] = export_background(tmp / "unpacked", tmp / "background", test_drawers)
            shutil.rmtree(tmp / "unpacked")
        write_json(tmp / DONE, meta)
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--omniglot", required=True, help="Omniglot python/ folder (all_runs.zip or all_runs/)")
    parser.add_argument("--out", required=True, help="output folder: runs/ and background/")
    parser.add_argument("--background", default="",
                        help="background set to export for pretraining, e.g. images_background_small1 (empty: none)")
    parser.add_argument("--test_drawers", type=int, default=4, help="drawings per character held out as background test")
    args = parser.parse_args(argv)
    try:
        meta = prepare(args.omniglot, args.out, args.background, args.test_drawers)
    except (FileNotFoundError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"Omniglot at {args.out}: {meta['runs']} runs, {meta['queries']} queries"
          + (f"; background {meta['background']}" if "background" in meta else ""))


if __name__ == "__main__":
    main()
