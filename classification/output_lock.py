"""One run per output folder: rank 0 holds an exclusive lock on <output_dir>/run.lock while it trains.

A second run started on the same folder would interleave its checkpoints and logs with the first one's;
it is refused, naming the holder. The lock is flock(2): the kernel drops it when the holder exits, also on
SIGKILL, so a killed run never leaves a stale lock behind (on NFS flock needs working lock support). The
file stays (deleting a lock file races with the next taker); its text names the last holder.
"""
from __future__ import annotations

import datetime
import fcntl
import os
import pathlib
import socket

LOCK_NAME = "run.lock"


class OutputDirBusy(RuntimeError):
    """Another run holds the output folder."""


class OutputLock:
    """Exclusive, non-blocking lock of one output folder (held from acquire() to release())."""

    def __init__(self, output_dir):
        self.path = pathlib.Path(output_dir) / LOCK_NAME
        self._file = None

    def acquire(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown process"
            f.close()
            raise OutputDirBusy(f"output folder {self.path.parent} is in use by another run ({holder}; lock "
                                f"{self.path}): use another --output-dir, or wait for that run to end") from None
        f.seek(0)
        f.truncate()
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n")
        f.flush()
        self._file = f
        return self

    def release(self):
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
