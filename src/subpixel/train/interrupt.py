"""Ctrl-C during training: finish the current step, checkpoint, then stop (a second Ctrl-C stops at once)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["deferred_interrupt"]


@contextmanager
def deferred_interrupt(repeat_stops: bool = True) -> Iterator[Callable[[], bool]]:
    """Yield ``pending()``: whether SIGINT arrived. The first SIGINT only sets it, so the loop can end its
    step and save a consistent checkpoint before raising ``KeyboardInterrupt`` itself; a second one
    raises at once, unless not ``repeat_stops`` (under a launcher that forwards the SIGINT it got to
    processes that got the terminal's already, and answers a second Ctrl-C by terminating them itself).
    A no-op (``pending`` always False) off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    hits = []

    def handler(signum: int, frame: object) -> None:
        hits.append(signum)
        if len(hits) > 1 and repeat_stops:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hits)
    finally:
        signal.signal(signal.SIGINT, previous)
