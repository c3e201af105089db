"""SIGTERM / SIGINT, what schedulers send before a kill and what Ctrl-C sends: the run stops at the next
update boundary with a checkpoint (recovery.pth; checkpoint.pth when it arrives between epochs) and exits
cleanly. A second signal (2 s or more later) acts at once, as the signal normally does. Under torchrun, the launcher forwards
SIGTERM to every process and kills them 30 s later; the processes agree on the stop (one collective per
update), so all of them stop at the same update."""
from __future__ import annotations

import signal
import threading
import time

from classification.utils import all_reduce_sum

SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_S = 2.0  # a second signal within this time is the first one delivered again, not "stop at once"


class StopSignals:
    """Context manager: while inside, SIGTERM / SIGINT set `received` (the signal's name) instead of ending the
    process (only in the main thread, where Python delivers signals)."""

    def __init__(self, rank: int = 0):
        self.rank, self.received, self._at = rank, None, 0.0
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            if time.monotonic() - self._at < REPEAT_S:  # the same stop, delivered twice: Ctrl-C under torchrun
                return  # reaches every process directly and again through the launcher
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # a second one: as without us
            signal.raise_signal(signum)
            return
        self.received, self._at = signal.Signals(signum).name, time.monotonic()
        if self.rank == 0:
            print(f"{self.received} received: stopping at the next update with a checkpoint (send it again to "
                  f"stop at once)", flush=True)

    def requested(self) -> bool:
        return self.received is not None


def agreed(flag: bool, device) -> bool:
    """Whether any process has `flag` set (a collective when distributed)."""
    return all_reduce_sum([float(flag)], device)[0] > 0
