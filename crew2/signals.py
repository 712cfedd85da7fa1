"""Ctrl+C and SIGTERM as a stop request that a loop reads, not an exception thrown wherever it happens to be."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While this holds, Ctrl+C (SIGINT) and SIGTERM set `stop`, and the loop that checks it ends at its next
    check. A KeyboardInterrupt raised at an arbitrary line can land inside a queue's or a lock's bookkeeping
    (the background writer's queue, rich Live's refresh) or between a key press and its record. A second signal
    raises KeyboardInterrupt as before, for a loop stuck where it does not check. A signal the process ignores
    (started in the background, under nohup) stays ignored; outside the main thread, where Python takes no
    signal handler, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt(f"signal {signum}")
        stop.set()

    signals = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not signal.SIG_IGN]
    before = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)
