"""Fetch the small public datasets the optional tests use into ``.test-data/``, checksummed.

Usage::

    make test-data                                   # = python3 tools/fetch_test_data.py
    python3 tools/fetch_test_data.py [--dest .test-data] [--manifest tools/test_data.json] [--datasets fsdd omniglot]

What it fetches (``tools/test_data.json`` lists each file, its source and its sha256):

* ``fsdd/recordings/``: the 3,000 WAVs of the Free Spoken Digit Dataset (CC BY-SA 4.0), from the GitHub archive
  of ``Jakobovski/free-spoken-digit-dataset`` (tests/test_superb_mini.py);
* ``omniglot/images_background_small{1,2}.zip``: Omniglot (MIT), from ``brendenlake/omniglot``
  (tests/test_simcore_data.py, tests/test_simcore_recipe.py);
* ``icbhi_samples/``: 10 public ICBHI 2017 recordings with their cycle annotations and the official split lists
  (free for research; cite Rocha et al. 2019), from ``GiorgosTsal/Respiratory-sounds-analysis`` and
  ``raymin0223/patch-mix_contrastive_learning`` (tests/test_audio_cls_data.py, tests/test_audio_cls_features.py);
* ``librispeech_samples/LibriSpeech/dev-clean/``: 2 dev-clean utterances (CC BY 4.0), from the ``huggingface/datasets``
  dummy data and ``lhotse-speech/lhotse`` test fixtures; their one-line transcripts are stored in the manifest
  (tests/test_data_prep.py, tests/test_recipe_framework.py).

The layout is that of ``../shared/data`` (see its SOURCES.md), which the tests fall back to. The tests look
for ``$COMPACT_SSL_TEST_DATA``, then ``<repo>/.test-data``, then ``../shared/data`` (tests/conftest.py), and skip
with a reason when a dataset is absent; they never use the network.

Each source (an archive, or one URL per file) is downloaded only when one of its files is missing or has the
wrong checksum; only the listed files are taken from an archive. Every file is verified against its sha256
before it is written (atomically: a temporary file renamed into place), so a rerun is a no-op and an
interrupted run leaves no partial file. A checksum that differs stops the run with an error naming the file,
its source and both checksums. Needs only the Python standard library (it runs before ``make setup``).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT / "tools" / "test_data.json"
DEFAULT_DEST = ROOT / ".test-data"
#: How a source delivers its files: one URL per file (``{member}`` in the URL), an archive, or text in the manifest.
FORMATS = ("file", "zip", "tar", "text")
TIMEOUT_S = 120


class FetchError(RuntimeError):
    """A download, archive member or checksum problem; the message names the file and what to do."""


@dataclass(frozen=True)
class Entry:
    """One file to fetch: where it goes, its expected sha256, and where it comes from."""

    dest: Path  #: absolute destination path
    sha256: str
    member: str  #: path (``file``: substituted into the URL; ``zip``/``tar``: pattern of the archive member)
    text: str | None  #: the content, for ``text`` sources


@dataclass(frozen=True)
class Source:
    """A URL (an archive, a template with ``{member}``, or none for ``text``) and the files it provides."""

    dataset: str
    url: str
    format: str
    entries: tuple[Entry, ...]


@dataclass
class Report:
    """What a run did: files already in place, files written."""

    present: int = 0
    fetched: int = 0


def sha256_of(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(path: str | Path, dest: str | Path) -> list[Source]:
    """Read a manifest (see tools/test_data.json) into sources whose files go under ``dest``.

    Layout: ``{"datasets": {name: {"sources": [{"url", "format", "member_prefix", "dest_prefix", "files"}]}}}``;
    ``files`` maps a path (relative to ``<dest>/<name>/<dest_prefix>`` and to ``member_prefix``) to its sha256,
    or to ``{"sha256", "member"}`` where the member is named otherwise (a glob pattern in an archive whose
    layout is not fixed), or for ``text`` sources to ``{"sha256", "text"}``. Raises FetchError naming the
    manifest and the entry.
    """
    path, dest = Path(path), Path(dest)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise FetchError(f"{path}: cannot read the manifest ({err}); restore it from git") from err
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise FetchError(f"{path}: expected an object with a 'datasets' object")
    sources = []
    for name, dataset in data["datasets"].items():
        for i, raw in enumerate(dataset.get("sources", [])):
            where = f"{path}: datasets.{name}.sources[{i}]"
            if raw.get("format") not in FORMATS:
                raise FetchError(f"{where}: format must be one of {FORMATS}, got {raw.get('format')!r}")
            if raw["format"] != "text" and not raw.get("url"):
                raise FetchError(f"{where}: a {raw['format']} source needs a url")
            entries = []
            for key, value in raw.get("files", {}).items():
                relative = PurePosixPath(raw.get("dest_prefix", ""), key)
                if relative.is_absolute() or ".." in relative.parts:
                    raise FetchError(f"{where}: file {key!r} must be a relative path inside the dataset folder")
                value = value if isinstance(value, dict) else {"sha256": value}
                expected, text = value.get("sha256"), value.get("text")
                if not (isinstance(expected, str) and len(expected) == 64):
                    raise FetchError(f"{where}: file {key!r} needs a 64-digit hex sha256, got {expected!r}")
                if (raw["format"] == "text") != isinstance(text, str):
                    raise FetchError(f"{where}: file {key!r}: text sources (and only they) give the file's text")
                member = value.get("member", raw.get("member_prefix", "") + key)
                entries.append(Entry(dest / name / relative, expected.lower(), member, text))
            sources.append(Source(name, raw.get("url", ""), raw["format"], tuple(entries)))
    return sources


@contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds and removed otherwise
    (compact_ssl.io has the same helper; this tool must run before the package is installed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _checksum_error(entry: Entry, got: str, origin: str) -> FetchError:
    return FetchError(f"{entry.dest}: sha256 {got} differs from the manifest's {entry.sha256} (from {origin}); "
                      "the source changed or the download is corrupt. Nothing was written for this file; rerun, "
                      "and if it persists update tools/test_data.json from a trusted copy (../shared/data)")


def _write_verified(entry: Entry, data: bytes, origin: str) -> None:
    """Write ``data`` to ``entry.dest`` atomically if its checksum is the manifest's; else raise FetchError."""
    got = sha256_of(data)
    if got != entry.sha256:
        raise _checksum_error(entry, got, origin)
    with _atomic_target(entry.dest) as tmp:
        tmp.write_bytes(data)


def _download(url: str, out: Path) -> None:
    """Stream ``url`` (http(s) or file://) into ``out``."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(out, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except (OSError, ValueError) as err:  # URLError is an OSError; a malformed URL is a ValueError
        raise FetchError(f"{url}: download failed ({err}); check the network (or proxy) and rerun") from err


def _members(path: Path, fmt: str, url: str) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """``(name, read)`` of every file member of a zip/tar archive, in archive order; ``read`` must be called
    before the next member (a compressed tar is read as one stream: seeking back would decompress it again)."""
    try:
        if fmt == "zip":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        yield info.filename, lambda info=info: archive.read(info)
        else:
            with tarfile.open(path, "r|*") as archive:
                for member in archive:
                    if member.isfile():
                        yield member.name, lambda member=member: archive.extractfile(member).read()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise FetchError(f"{url}: not a readable {fmt} archive ({err}); rerun, or check the url in the manifest") from err


def _fetch_archive(source: Source, missing: list[Entry], workdir: Path) -> None:
    archive = workdir / "archive"
    _download(source.url, archive)
    exact = {e.member: e for e in missing if not any(c in e.member for c in "*?[")}
    patterns = [e for e in missing if e.member not in exact]
    wrong: dict[Path, tuple[str, str]] = {}  #: dest -> (checksum, member) of a candidate with other content
    done: set[Path] = set()
    for name, read in _members(archive, source.format, source.url):
        entries = [exact[name]] if name in exact else []
        entries += [e for e in patterns if fnmatch.fnmatchcase(name, e.member)]
        entries = [e for e in entries if e.dest not in done]
        if not entries:
            continue
        try:
            data = read()
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as err:
            raise FetchError(f"{entries[0].dest}: member {name} of {source.url} is unreadable ({err}); "
                             "the download is corrupt: rerun") from err
        got = sha256_of(data)
        for entry in entries:
            if got == entry.sha256:  # an archive may hold copies under several names: take the listed content
                _write_verified(entry, data, f"{source.url} member {name}")
                done.add(entry.dest)
            else:
                wrong[entry.dest] = (got, name)
    for entry in missing:
        if entry.dest in done:
            continue
        if entry.dest in wrong:
            got, name = wrong[entry.dest]
            raise _checksum_error(entry, got, f"{source.url} member {name}")
        raise FetchError(f"{entry.dest}: {source.url} has no member matching {entry.member!r}; "
                         "the archive layout changed: update tools/test_data.json")


def _fetch_source(source: Source, missing: list[Entry], workdir: Path) -> None:
    if source.format == "text":
        for entry in missing:
            _write_verified(entry, entry.text.encode(), "the text in the manifest")
    elif source.format == "file":
        for entry in missing:
            url = source.url.format(member=entry.member)
            _download(url, workdir / "file")
            _write_verified(entry, (workdir / "file").read_bytes(), url)
    else:
        _fetch_archive(source, missing, workdir)


def fetch(sources: list[Source], datasets: list[str] | None = None, log: Callable[[str], None] = print) -> Report:
    """Bring every file of ``sources`` (of the named ``datasets``, default all) into place, verified.

    Files already present with the right checksum are kept; a source is downloaded only for files that are
    missing or differ (those are replaced). Raises FetchError naming the file on any problem.
    """
    known = sorted({s.dataset for s in sources})
    unknown = sorted(set(datasets or ()) - set(known))
    if unknown:
        raise FetchError(f"unknown dataset(s) {unknown}; the manifest has {known}")
    report = Report()
    for source in sources:
        if datasets and source.dataset not in datasets:
            continue
        missing = [e for e in source.entries if not (e.dest.is_file() and file_sha256(e.dest) == e.sha256)]
        report.present += len(source.entries) - len(missing)
        if not missing:
            continue
        log(f"{source.dataset}: fetching {len(missing)} of {len(source.entries)} files from "
            f"{source.url or 'the manifest'}")
        missing[0].dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=missing[0].dest.parent) as workdir:
            _fetch_source(source, missing, Path(workdir))
        report.fetched += len(missing)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default=str(DEFAULT_DEST), help="folder to fill (default: <repo>/.test-data)")
    parser.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="file list with sources and sha256")
    parser.add_argument("--datasets", nargs="+", help="only these datasets (default: every one in the manifest)")
    args = parser.parse_args(argv)
    try:
        report = fetch(load_manifest(args.manifest, args.dest), args.datasets)
    except FetchError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(f"{args.dest}: {report.present + report.fetched} files verified ({report.fetched} fetched, "
          f"{report.present} already in place)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
