"""Keys released even when the driver cannot release them itself: killed (SIGKILL), stopped (SIGSTOP, a debugger)
or hung. A small process beside the driver takes a heartbeat through a pipe, one byte a frame; when the beats stop
for `limit` seconds it releases every key of the driver's profile, and when the pipe closes without a goodbye (the
driver died) it releases them and exits. It presses nothing, ever.

    python -m crew2.io.keyguard --keys w,a,s,d [--limit 0.5] [--display :0]   (started by KeyGuard)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

BYE = b"q"  # the driver is done and released its keys itself: exit quietly


class KeyGuard:
    """The driver's side: starts the guard process (in its own session, so a Ctrl+Z or a signal to the driver's
    process group does not reach it), beats once a frame, says goodbye when the drive ends."""

    def __init__(self, keys: Sequence[str], display: str | None = None, limit: float = 0.5):
        command = [sys.executable, "-m", "crew2.io.keyguard", "--keys", ",".join(keys), "--limit", str(limit)]
        if display:
            command += ["--display", display]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True)
        self._fd = self.proc.stdin.fileno()
        if hasattr(os, "set_blocking"):  # Windows has it for pipes from Python 3.12 on
            os.set_blocking(self._fd, False)  # a beat never waits, whatever the guard is doing

    def __enter__(self) -> KeyGuard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(self._fd, data)

    def beat(self) -> None:
        self._send(b".")

    def close(self) -> None:
        if self.proc.poll() is None:
            self._send(BYE)
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def guard(keys: Sequence[str], limit: float, display: str | None, stream=None) -> str:
    """The guard process's loop over `stream` (a buffered binary pipe: stdin); returns why it ended ("bye" or
    "driver gone")."""
    from crew2.io.platform import current

    stream = stream if stream is not None else sys.stdin.buffer
    sender = current().sender(keys, display)
    last, ended = time.monotonic(), threading.Event()
    said_bye = False

    def listen() -> None:
        nonlocal last, said_bye
        while chunk := stream.read1(4096):  # b"": the pipe closed
            last = time.monotonic()
            if BYE in chunk:
                said_bye = True
                break
        ended.set()

    threading.Thread(target=listen, name="crew2-keyguard", daemon=True).start()
    released = False
    try:
        while not ended.wait(limit / 4):
            silent = time.monotonic() - last > limit
            if silent and not released:
                release(sender, keys)
            released = silent
        if not (said_bye or released):  # released already: the person may be holding keys since
            release(sender, keys)
        return "bye" if said_bye else "driver gone"
    finally:
        sender.close()


def release(sender, keys: Sequence[str]) -> None:
    """Release every key of the profile: the guard cannot know which ones the driver held."""
    with sender.lock:
        sender.down = set(keys)
    sender.release_all()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crew2.io.keyguard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", required=True, help="comma-separated key names of the driver's profile")
    parser.add_argument("--limit", type=float, default=0.5, help="seconds without a beat before releasing")
    parser.add_argument("--display", help="X display (X11 only)")
    args = parser.parse_args(argv)
    guard([k for k in args.keys.split(",") if k], args.limit, args.display)


if __name__ == "__main__":
    main()
