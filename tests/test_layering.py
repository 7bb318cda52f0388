"""The package layering of ARCHITECTURE.md: the three method packages are peers over the core.

Every module of each package is imported in a fresh interpreter; importing any of them must not
load a sibling method package (``compact_ssl`` must load none of them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compact_ssl", "audio_compress", "audio_cls", "vision_ssl")
METHOD_PACKAGES = PACKAGES[1:]

_PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_no_sibling(package):
    proc = subprocess.run([sys.executable, "-c", _PROBE, package], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report["modules"]) >= 5, report["modules"]
    siblings = sorted(set(METHOD_PACKAGES) & set(report["loaded"]) - {package})
    assert not siblings, f"importing every module of {package} loads {siblings}"


def test_sources_name_no_sibling_package():
    """Also lazy imports inside functions: no source file of a method package names a sibling."""
    offenders = []
    for package in PACKAGES:
        others = [p for p in METHOD_PACKAGES if p != package]
        for path in (ROOT / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")) and any(
                        stripped.split()[1].split(".")[0] == other for other in others):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert not offenders, "\n".join(offenders)
