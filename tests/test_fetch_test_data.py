"""tools/fetch_test_data.py against local file:// sources (never the network): archives and single files are
fetched and verified, a wrong checksum is refused naming the file, a rerun is a no-op; the real manifest
describes the copies in the test data folder; conftest's test-data resolution order."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, SHARED_DATA, resolve_test_data

TOOL = ROOT / "tools" / "fetch_test_data.py"
_spec = importlib.util.spec_from_file_location("fetch_test_data", TOOL)
fetch_test_data = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fetch_test_data  # dataclasses look their module up while the file executes
_spec.loader.exec_module(fetch_test_data)

FILES = {"recordings/0_a_0.wav": b"RIFF zero", "recordings/1_a_0.wav": b"RIFF one", "README.md": b"not wanted"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sources(tmp_path: Path) -> dict:
    """A manifest over local sources: a tar.gz with a top folder, a zip whose member is found by pattern,
    two single files behind a URL template, and a text file."""
    up = tmp_path / "upstream"
    up.mkdir()
    with tarfile.open(up / "repo.tar.gz", "w:gz") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(f"repo-abc123/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(up / "dummy.zip", "w") as z:
        z.writestr("dummy_data/x.tar.gz/Corpus/1-2-0.flac", b"fLaC audio")
        z.writestr("dummy_data/y.tar.gz/Corpus/1-2-0.flac", b"fLaC other copy")
    (up / "raw" / "lists").mkdir(parents=True)
    (up / "raw" / "lists" / "split.txt").write_bytes(b"a\ttrain\n")
    return {"datasets": {
        "digits": {"sources": [{"url": (up / "repo.tar.gz").as_uri(), "format": "tar", "member_prefix": "repo-abc123/",
                                "files": {k: _sha(v) for k, v in FILES.items() if k.endswith(".wav")}}]},
        "speech": {"sources": [
            {"url": (up / "dummy.zip").as_uri(), "format": "zip",
             "files": {"Corpus/1-2-0.flac": {"sha256": _sha(b"fLaC other copy"), "member": "*/1-2-0.flac"}}},
            {"url": (up / "raw").as_uri() + "/{member}", "format": "file", "member_prefix": "lists/",
             "dest_prefix": "lists/", "files": {"split.txt": _sha(b"a\ttrain\n")}},
            {"format": "text", "files": {"Corpus/1-2.trans.txt": {"sha256": _sha(b"1-2-0 HELLO\n"), "text": "1-2-0 HELLO\n"}}},
        ]}}}


def _write(manifest: dict, path: Path) -> Path:
    path.write_text(json.dumps(manifest))
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fetch_extracts_only_listed_files_and_rerun_is_a_noop(tmp_path):
    manifest = _write(_sources(tmp_path), tmp_path / "manifest.json")
    dest = tmp_path / "data"
    logs: list[str] = []
    report = fetch_test_data.fetch(fetch_test_data.load_manifest(manifest, dest), log=logs.append)
    assert (report.fetched, report.present) == (5, 0)
    assert _tree(dest) == {
        "digits/recordings/0_a_0.wav": b"RIFF zero", "digits/recordings/1_a_0.wav": b"RIFF one",
        "speech/Corpus/1-2-0.flac": b"fLaC other copy",  # the copy with the listed checksum
        "speech/lists/split.txt": b"a\ttrain\n", "speech/Corpus/1-2.trans.txt": b"1-2-0 HELLO\n",
    }
    assert logs[0] == f"digits: fetching 2 of 2 files from {(tmp_path / 'upstream' / 'repo.tar.gz').as_uri()}"
    mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    (tmp_path / "upstream" / "repo.tar.gz").unlink()  # a rerun must not even need the sources
    logs.clear()
    report = fetch_test_data.fetch(fetch_test_data.load_manifest(manifest, dest), log=logs.append)
    assert (report.fetched, report.present, logs) == (0, 5, [])
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == mtimes


def test_damaged_local_file_is_replaced_and_only_its_source_refetched(tmp_path):
    manifest = _write(_sources(tmp_path), tmp_path / "manifest.json")
    dest = tmp_path / "data"
    fetch_test_data.fetch(fetch_test_data.load_manifest(manifest, dest), log=lambda _: None)
    (dest / "digits" / "recordings" / "1_a_0.wav").write_bytes(b"truncated")
    logs: list[str] = []
    report = fetch_test_data.fetch(fetch_test_data.load_manifest(manifest, dest), log=logs.append)
    assert (report.fetched, report.present) == (1, 4) and len(logs) == 1 and logs[0].startswith("digits: fetching 1 of 2")
    assert (dest / "digits" / "recordings" / "1_a_0.wav").read_bytes() == b"RIFF one"


def test_wrong_checksum_is_refused_naming_the_file(tmp_path):
    sources = _sources(tmp_path)
    files = sources["datasets"]["digits"]["sources"][0]["files"]
    files["recordings/1_a_0.wav"] = _sha(b"something else")
    manifest = _write(sources, tmp_path / "manifest.json")
    dest = tmp_path / "data"
    proc = subprocess.run([sys.executable, str(TOOL), "--manifest", str(manifest), "--dest", str(dest),
                           "--datasets", "digits"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    target = dest / "digits" / "recordings" / "1_a_0.wav"
    assert proc.stderr.startswith(f"ERROR: {target}: sha256 {_sha(b'RIFF one')} differs from the manifest's "
                                  f"{_sha(b'something else')} (from {(tmp_path / 'upstream' / 'repo.tar.gz').as_uri()} "
                                  "member repo-abc123/recordings/1_a_0.wav)")
    # verified files before it are in place; the refused one and no temporary file are
    assert _tree(dest) == {"digits/recordings/0_a_0.wav": b"RIFF zero"}


@pytest.mark.parametrize("edit,message", [
    (lambda s: s["datasets"]["speech"]["sources"][0]["files"]["Corpus/1-2-0.flac"].update(member="*/missing.flac"),
     "has no member matching '*/missing.flac'"),
    (lambda s: s["datasets"]["speech"]["sources"][1].update(url="file:///nonexistent/{member}"), "download failed"),
    (lambda s: s["datasets"]["speech"]["sources"][1]["files"].update({"../escape.txt": "0" * 64}),
     "must be a relative path inside the dataset folder"),
    (lambda s: s["datasets"]["speech"]["sources"][0].update(format="rar"), "format must be one of"),
])
def test_manifest_and_source_errors_name_the_problem(tmp_path, edit, message):
    sources = _sources(tmp_path)
    edit(sources)
    manifest = _write(sources, tmp_path / "manifest.json")
    with pytest.raises(fetch_test_data.FetchError, match=message.replace("*", r"\*")):
        fetch_test_data.fetch(fetch_test_data.load_manifest(manifest, tmp_path / "data"), log=lambda _: None)


def test_unknown_dataset_is_refused(tmp_path):
    manifest = _write(_sources(tmp_path), tmp_path / "manifest.json")
    with pytest.raises(fetch_test_data.FetchError, match=r"unknown dataset\(s\) \['fsdd'\]; the manifest has \['digits', "):
        fetch_test_data.fetch(fetch_test_data.load_manifest(manifest, tmp_path / "data"), ["fsdd"])


def test_real_manifest_describes_the_shared_copies():
    sources = fetch_test_data.load_manifest(fetch_test_data.DEFAULT_MANIFEST, SHARED_DATA)
    entries = [e for s in sources for e in s.entries]
    assert {s.dataset for s in sources} == {"fsdd", "omniglot", "icbhi_samples", "librispeech_samples"}
    assert len(entries) == 3000 + 3 + 22 + 4 and len({e.dest for e in entries}) == len(entries)
    present = [e for e in entries if e.dest.is_file()]
    if not present:
        pytest.skip(f"no test data at {SHARED_DATA} to compare the manifest with (`make test-data` fetches it)")
    assert [str(e.dest) for e in present if fetch_test_data.file_sha256(e.dest) != e.sha256] == []


def test_test_data_resolution_order(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    assert resolve_test_data(repo, {}) == tmp_path / "shared" / "data"
    (repo / ".test-data").mkdir()
    assert resolve_test_data(repo, {"COMPACT_SSL_TEST_DATA": ""}) == repo / ".test-data"
    assert resolve_test_data(repo, {"COMPACT_SSL_TEST_DATA": str(tmp_path / "x")}) == tmp_path / "x"
