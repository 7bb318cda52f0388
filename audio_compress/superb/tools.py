"""The pinned s3prl checkout that full SUPERB tasks need (``tools/s3prl``).

The PyPI wheel of s3prl 0.4.18 has the downstream code but not the files next to it:
downstream configs, ``downstream/asr/char.dict``, the PR lexicons and phone vocabulary
(``downstream/ctc/{lexicon,vocab}``), the ``downstream/ctc/corpus`` readers (PR, SF), the
VoxCeleb1 split and trial lists, and the SD scoring script. :func:`ensure_s3prl_checkout`
provides them by cloning s3prl at :data:`~audio_compress.superb.tasks.S3PRL_COMMIT` (once, with
internet access); the runner then points s3prl at those files with absolute paths. Our own
configs (``audio_compress/superb/configs``) replace s3prl's ``config.yaml`` files.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from audio_compress.superb.tasks import S3PRL_COMMIT, S3PRL_GIT_URL, TASKS

__all__ = ["S3prlCheckoutError", "ensure_s3prl_checkout", "checkout_commit", "missing_tool_files"]

#: A file every checkout has; used to recognise one that was copied without .git.
MARKER = "s3prl/downstream/runner.py"


class S3prlCheckoutError(RuntimeError):
    """The s3prl checkout is missing and could not be made."""


def missing_tool_files(dest: str | Path, tasks=None) -> list[str]:
    """Files of ``tasks`` (default: all) that are not in the checkout ``dest``."""
    dest = Path(dest)
    names = tasks or list(TASKS)
    missing = []
    for name in names:
        spec = TASKS[name]
        missing += [rel for rel in spec.tool_files if not (dest / rel).exists()]
        if spec.needs_ctc_corpus and not (dest / "s3prl/downstream/ctc/corpus").is_dir():
            missing.append("s3prl/downstream/ctc/corpus")
    return sorted(set(missing))


def checkout_commit(dest: str | Path) -> str | None:
    """The commit of a git checkout (``None`` if ``dest`` is not one or git is absent)."""
    git = shutil.which("git")
    if git is None or not (Path(dest) / ".git").exists():
        return None
    proc = subprocess.run([git, "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def ensure_s3prl_checkout(dest: str | Path = "tools/s3prl", commit: str = S3PRL_COMMIT,
                          url: str = S3PRL_GIT_URL, fetch: bool = True, log=print) -> Path:
    """Make sure ``dest`` holds s3prl at ``commit``; clone it if absent and ``fetch``.

    An existing checkout at another commit is kept with a warning (delete it to re-clone); a
    folder without ``.git`` that has s3prl's files is accepted as is. Raises
    :class:`S3prlCheckoutError` with what to do when the clone is impossible (offline, no git).
    """
    dest = Path(dest)
    if (dest / MARKER).is_file():
        have = checkout_commit(dest)
        if have is None:
            log(f"{dest}: s3prl files present (not a git checkout; cannot verify commit {commit})")
        elif not have.startswith(commit):
            log(f"WARNING: {dest} is at commit {have[:12]}, not the pinned {commit}; "
                f"delete it to re-clone")
        else:
            log(f"{dest}: s3prl at commit {have[:12]}")
        return dest
    how = (f"Clone it by hand where you have internet access and copy it here:\n"
           f"  git clone {url} {dest} && git -C {dest} checkout {commit}")
    if not fetch:
        raise S3prlCheckoutError(f"{dest} has no s3prl checkout and fetching is off. {how}")
    git = shutil.which("git")
    if git is None:
        raise S3prlCheckoutError(f"git is not installed, so {dest} cannot be cloned. {how}")
    if dest.exists() and any(dest.iterdir()):
        raise S3prlCheckoutError(f"{dest} exists but is not an s3prl checkout; remove it. {how}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    log(f"cloning {url} into {dest} (commit {commit})")
    clone = subprocess.run([git, "clone", "--quiet", url, str(dest)], capture_output=True, text=True)
    if clone.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise S3prlCheckoutError(f"could not clone {url} (offline?): {clone.stderr.strip()[-500:]}\n{how}")
    co = subprocess.run([git, "-C", str(dest), "checkout", "--quiet", commit], capture_output=True, text=True)
    if co.returncode != 0:
        raise S3prlCheckoutError(f"commit {commit} not found in {dest}: {co.stderr.strip()[-500:]}")
    log(f"{dest}: s3prl at commit {checkout_commit(dest) or commit}")
    return dest
