"""An exclusive lock on a folder, so two runs never write into one experiment at once.

The lock is a kernel lock (``flock``) on a file: it is released when the process holding it
ends, however it ends, so a killed run never leaves a stale lock behind. The file itself stays
(removing it would race with a process about to lock it) and records the last holder.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockHeldError(RuntimeError):
    """Another live process holds the lock."""


@contextmanager
def exclusive_lock(path: str | Path, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block.

    Args:
        path: the lock file, e.g. ``<rundir>/run.lock``.
        what: what the lock protects, for the message (e.g. the run folder).

    Raises:
        LockHeldError: a live process holds it; the message names that process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text().strip() or "unknown process"
        os.close(fd)
        raise LockHeldError(f"{what} is in use by another run ({holder}). Wait for it to finish, or give this "
                            f"run another folder; the lock ({path}) ends with the process holding it.") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}: "
                     f"{' '.join(sys.argv)}\n".encode())
        yield path
    finally:
        os.close(fd)
