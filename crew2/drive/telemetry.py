"""Live telemetry: a rolling aggregate of the loop's frames and a renderer that is a pure function of a
snapshot (so it is tested on a snapshot, and refreshed at most ~10 times a second, apart from the loop)."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from crew2.drive.loop import STAGES, FrameLog
from crew2.io.picture import WHAT_TO_DO


@dataclass
class Snapshot:
    fps: float
    target_fps: float
    latency_ms: dict[str, tuple[float, float]]  # stage -> (p50, p99); "total" too
    keys: list[str]
    probs: list[float]
    thresholds: list[float]
    pressed: list[str]
    obstacles: int
    closest_ttc: float | None
    rules: dict[str, int]  # rule -> frames it fired in
    late: int
    skipped: dict[str, int]  # frames not driven, by why: bad, black, frozen
    steps: int
    sending: bool
    crash_prevention: str = ""  # what crash prevention acts on (`run.box_rules`'s line); "" when it is off
    driver: str = "model"  # "person" while the person has taken over
    person: list[str] = field(default_factory=list)  # their keys down
    takeovers: int = 0
    blind: str | None = None  # why the latest frame was not driven ("black", "frozen", "bad"); None: driven


@dataclass
class Aggregator:
    keys: list[str]
    thresholds: list[float]
    target_fps: float
    crash_prevention: str = ""
    window: deque = field(default_factory=lambda: deque(maxlen=200))
    rules: Counter = field(default_factory=Counter)
    late: int = 0
    skipped: Counter = field(default_factory=Counter)
    blind: str | None = None

    def skip(self, why: str) -> None:
        self.skipped[why] += 1
        self.blind = why

    def add(self, log: FrameLog) -> None:
        self.blind = None
        self.window.append(log)
        self.rules.update({h.rule for h in log.hits})
        self.late += log.late

    def snapshot(self) -> Snapshot | None:
        if not self.window:
            return None
        logs = list(self.window)
        span = logs[-1].t - logs[0].t
        latency = {}
        for stage in (*STAGES, "total"):
            values = [sum(lg.ms.values()) if stage == "total" else lg.ms[stage] for lg in logs]
            latency[stage] = (float(np.percentile(values, 50)), float(np.percentile(values, 99)))
        last = logs[-1]
        return Snapshot(fps=(len(logs) - 1) / span if span > 0 else 0.0, target_fps=self.target_fps,
                        latency_ms=latency, keys=self.keys, probs=last.probs, thresholds=self.thresholds,
                        pressed=last.pressed, obstacles=last.obstacles, closest_ttc=last.closest_ttc,
                        rules=dict(self.rules), late=self.late, skipped=dict(self.skipped), steps=last.step,
                        sending=last.sent, crash_prevention=self.crash_prevention, driver=last.driver,
                        person=last.person, takeovers=last.takeovers, blind=self.blind)


def bar(p: float, threshold: float, width: int = 20) -> Text:
    """A probability bar with the threshold marked: ██████░░░│░░░."""
    filled = round(p * width)
    mark = min(width - 1, round(threshold * width))
    chars = ["█" if i < filled else "░" for i in range(width)]
    chars[mark] = "│"
    return Text("".join(chars))


def render(s: Snapshot) -> Group:
    if s.blind is not None:
        why = {"black": "the picture is black", "frozen": "the picture stands still under throttle"}.get(s.blind,
                                                                                                    "no usable frame")
        who, style = f"NO KEYS: {why}", "bold yellow"
    elif s.driver == "person":
        who, style = f"YOU DRIVE (takeover {s.takeovers}: {'+'.join(s.person).upper() or 'no key'}); crew2 sends " \
                     "nothing until you let go", "bold cyan"
    elif s.sending:
        who, style = f"crew2 drives, takeovers {s.takeovers}", "bold"
    else:
        who, style = "HOLDING KEYS BACK (paused, dry run or game not in front)", "bold yellow"
    skipped = "   ".join(f"{why} {n}" for why, n in sorted(s.skipped.items()))
    head = Text(f"{s.fps:5.1f} / {s.target_fps:g} fps   step {s.steps}   late {s.late}   "
                f"{skipped or 'no frame skipped'}   {who}", style=style)
    keys = Table(title="keys", show_edge=False, pad_edge=False)
    for col in ("key", "p", "", "threshold", "down"):
        keys.add_column(col)
    for k, p, t in zip(s.keys, s.probs, s.thresholds, strict=True):
        down = k in s.pressed
        keys.add_row(k.upper(), f"{p:.2f}", bar(p, t), f"{t:.2f}", Text("■" if down else "·",
                                                                        style="green" if down else "dim"))
    lat = Table(title="latency ms (p50 / p99)", show_edge=False, pad_edge=False)
    lat.add_column("stage")
    lat.add_column("p50", justify="right")
    lat.add_column("p99", justify="right")
    for stage, (p50, p99) in s.latency_ms.items():
        lat.add_row(stage, f"{p50:.2f}", f"{p99:.2f}", style="bold" if stage == "total" else None)
    ttc = "—" if s.closest_ttc is None else f"{s.closest_ttc:.2f} s"
    rules = ", ".join(f"{r} ×{n}" for r, n in sorted(s.rules.items())) or "none fired"
    tail = Text(f"obstacles {s.obstacles}   closest time-to-contact {ttc}\nrules: {rules}"
                + (f"\n{s.crash_prevention}" if s.crash_prevention else ""))
    if s.blind in ("black", "frozen"):
        return Group(head, Text(WHAT_TO_DO, style="yellow"), keys, lat, tail)
    return Group(head, keys, lat, tail)
