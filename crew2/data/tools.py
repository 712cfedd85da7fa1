"""Tools over session files: inventory, key-combination statistics, validation, splits, merging, overlays."""

from __future__ import annotations

import os
import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from crew2.data.idle import IDLE_SECONDS, idle_runs, run_seconds
from crew2.data.session import (
    BOX_SOURCE,
    COMMITTED,
    FRAMES,
    KEYS,
    NOT_ANNOTATED,
    PER_FRAME,
    REVIEWED,
    Session,
    SessionWriter,
)
from crew2.errors import Crew2Error, read_yaml
from crew2.outputs import check_output, whole
from crew2.video import Mp4Writer

SPLITS = ("train", "val", "test")


def session_paths(paths: list[Path]) -> list[Path]:
    """Files as given, and the .h5 files inside folders, sorted; an empty result is an error."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(p.rglob("*.h5"))
        elif p.exists():
            found.append(p)
        else:
            raise Crew2Error(f"{p}: no such file or folder")
    if not found:
        raise Crew2Error(f"no session files (.h5) in {', '.join(map(str, paths))}")
    return found


@dataclass
class IdleSummary:
    """Frames with no key pressed, and the idle stretches (see crew2.data.idle) of one or more sessions."""

    frames: int
    no_keys: int  # frames with no key pressed, in stretches of any length
    stretches: int  # idle stretches of `min_seconds` or more
    idle_frames: int  # frames inside them
    idle_seconds: float
    longest_seconds: float = 0.0
    longest_at: str = ""  # where the longest starts: "session.h5 at 12.3 s"
    min_seconds: float = IDLE_SECONDS

    @staticmethod
    def of(keys: np.ndarray, times: np.ndarray, name: str, min_seconds: float = IDLE_SECONDS) -> IdleSummary:
        runs = idle_runs(keys, times, min_seconds)
        seconds = [run_seconds(times, r) for r in runs]
        longest = int(np.argmax(seconds)) if runs else -1
        return IdleSummary(
            frames=len(keys), no_keys=int((~keys.astype(bool).any(1)).sum()) if len(keys) else 0,
            stretches=len(runs), idle_frames=sum(b - a for a, b in runs), idle_seconds=float(sum(seconds)),
            longest_seconds=seconds[longest] if runs else 0.0,
            longest_at=f"{name} at {times[runs[longest][0]] - times[0]:.1f} s" if runs else "",
            min_seconds=min_seconds)

    @staticmethod
    def total(parts: list[IdleSummary]) -> IdleSummary:
        """The sum over sessions; the longest stretch is the longest of any."""
        longest = max(parts, key=lambda p: p.longest_seconds, default=None)
        return IdleSummary(
            frames=sum(p.frames for p in parts), no_keys=sum(p.no_keys for p in parts),
            stretches=sum(p.stretches for p in parts), idle_frames=sum(p.idle_frames for p in parts),
            idle_seconds=sum(p.idle_seconds for p in parts),
            longest_seconds=longest.longest_seconds if longest else 0.0,
            longest_at=longest.longest_at if longest else "",
            min_seconds=parts[0].min_seconds if parts else IDLE_SECONDS)

    @property
    def no_keys_share(self) -> float:
        return self.no_keys / max(self.frames, 1)

    @property
    def idle_share(self) -> float:
        return self.idle_frames / max(self.frames, 1)


@dataclass
class SessionInfo:
    path: Path
    frames: int
    seconds: float
    fps: float
    source: str
    driver: str
    keys: list[str]
    resolution: str
    kb_per_frame: float
    annotated: int
    reviewed: int
    boxes_per_class: Counter
    idle: IdleSummary


def info(path: Path) -> SessionInfo:
    s = Session(path)
    try:
        times = s.times()
        sources = s.box_sources()
        per_class: Counter = Counter()
        for i in np.flatnonzero(sources != NOT_ANNOTATED):
            per_class.update(int(c) for c in s.boxes(int(i))[:, 4])
        names = s.meta.class_names
        per_class = Counter({(names[c] if c < len(names) else str(c)): n for c, n in per_class.items()})
        return SessionInfo(
            path=path, frames=len(s), seconds=float(times[-1] - times[0]) if len(s) > 1 else 0.0,
            fps=s.meta.fps, source=s.meta.source, driver=s.meta.driver, keys=s.meta.keys,
            resolution=f"{s.meta.width}x{s.meta.height}", kb_per_frame=path.stat().st_size / 1000 / max(len(s), 1),
            annotated=int((sources != NOT_ANNOTATED).sum()), reviewed=int((sources == REVIEWED).sum()),
            boxes_per_class=per_class, idle=IdleSummary.of(s.keys(), times, path.name))
    finally:
        s.close()


def combo_name(keys: list[str], vector: np.ndarray) -> str:
    """'W+A' for a key vector with W and A down; 'none' when nothing is."""
    down = [k.upper() for k, on in zip(keys, vector, strict=True) if on]
    return "+".join(down) if down else "none"


def key_combinations(paths: list[Path]) -> Counter:
    """How many frames show each combination of keys, over all sessions (which must share a key list)."""
    counts: Counter = Counter()
    keys = None
    for path in paths:
        s = Session(path)
        if keys is not None and s.meta.keys != keys:
            raise Crew2Error(f"{path} records keys {s.meta.keys}, the others {keys}: compare like with like")
        keys = s.meta.keys
        vectors, n = np.unique(s.keys(), axis=0, return_counts=True)
        counts.update({combo_name(keys, v): int(c) for v, c in zip(vectors, n, strict=True)})
        s.close()
    return counts


def plot_combinations(counts: Counter, png: Path, title: str = "key combinations") -> None:
    """A horizontal bar chart of frames per key combination, largest first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = counts.most_common()
    total = max(sum(counts.values()), 1)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(items) + 1.2))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#3b7dd8")
    for i, (_, v) in enumerate(items[::-1]):
        ax.text(v, i, f" {v} ({100 * v / total:.1f}%)", va="center", fontsize=8)
    ax.set_xlabel("frames")
    ax.set_title(title)
    ax.set_xlim(0, max(v for _, v in items) * 1.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def validate(path: Path, on_frame: Callable[[], None] | None = None) -> list[str]:
    """Every problem found in a session, as sentences; empty when the file is sound. Decodes every frame
    (`on_frame` after each: progress)."""
    try:
        s = Session(path)
    except Crew2Error as e:
        return [str(e)]
    try:
        return _layout_problems(s) + _frame_problems(s, on_frame)
    except Exception as e:  # HDF5 reports damage as OSError, KeyError, RuntimeError, ...
        return [f"unreadable past what is listed ({type(e).__name__}: {e})"]
    finally:
        s.close()


def _layout_problems(s: Session) -> list[str]:
    """Datasets of unequal length, frames cut off, key vectors and timestamps that are not what a recorder writes."""
    problems, f = [], s.f
    lengths = {name: len(f[name]) for name in PER_FRAME if name in f}
    if len(set(lengths.values())) > 1:
        problems.append(f"datasets differ in length ({lengths}): a frame was cut off by a crash")
    stored = int(f[COMMITTED][0]) if COMMITTED in f else min(lengths.values(), default=0)
    if stored - len(s) > s.meta.fps:  # more than a crash's last second: a truncated copy, a damaged disk
        problems.append(f"only {len(s)} of {stored} frames are whole on disk: the rest is cut off")
    keys, times = s.keys(), s.times()
    if keys.shape[1] != len(s.meta.keys):
        problems.append(f"key vectors have {keys.shape[1]} entries for {len(s.meta.keys)} keys")
    if not np.isin(keys, (0, 1)).all():
        problems.append("key vectors hold values other than 0 and 1")
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        problems.append(f"timestamps go backwards or repeat at {int(np.argmin(np.diff(times)))}")
    return problems


def _frame_problems(s: Session, on_frame: Callable[[], None] | None) -> list[str]:
    """Frames that do not decode to the session's size, or whose bytes changed since recording; boxes outside
    the frame or of an unknown class."""
    problems, bad_frames, changed = [], [], []
    w, h, classes = s.meta.width, s.meta.height, len(s.meta.class_names)
    for i in range(len(s)):
        try:
            if s.frame(i).shape != (h, w, 3):
                bad_frames.append(i)
            elif s.intact(i) is False:  # decodes, to the wrong pixels
                changed.append(i)
        except Exception:  # a damaged frame fails in many ways; each is a bad frame
            bad_frames.append(i)
        b = s.boxes(i)
        if len(b) and ((b[:, :4] < -0.5).any() or (b[:, [0, 2]] > w + 0.5).any() or (b[:, [1, 3]] > h + 0.5).any()):
            problems.append(f"frame {i} has a box outside the frame")
        if len(b) and classes and ((b[:, 4] < 0) | (b[:, 4] >= classes)).any():
            problems.append(f"frame {i} has a box of an unknown class")
        if on_frame is not None:
            on_frame()
    if bad_frames:
        problems.append(f"{len(bad_frames)} frame(s) do not decode to {w}x{h}, first at {bad_frames[0]}")
    if changed:
        problems.append(f"{len(changed)} frame(s) decode but their bytes are not those recorded (checksum), "
                        f"first at {changed[0]}")
    return problems


def split(paths: list[Path], fractions: tuple[float, float, float], seed: int) -> dict[str, list[Path]]:
    """Whole sessions to train/val/test (never frames: neighbouring frames are near duplicates), so that
    each split's share of frames comes close to its fraction. Reproducible for a seed. Corrections (`crew2 drive
    --corrections`) always train: they hold only the moments a model went wrong, no fair measure of a driver."""
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise Crew2Error(f"split fractions must be zero or more and add up to 1, not {fractions}")
    sessions = {p: Session(p) for p in paths}
    frames = {p: len(s) for p, s in sessions.items()}
    corrections = sorted(p for p, s in sessions.items() if s.meta.driver == "correction")
    for s in sessions.values():
        s.close()
    order = sorted(set(paths) - set(corrections))
    if len(order) < sum(f > 0 for f in fractions):
        raise Crew2Error(f"{len(order)} session(s) cannot fill {sum(f > 0 for f in fractions)} splits: "
                         "record more sessions (splits are by session, never by frame; corrections only train)")
    random.Random(seed).shuffle(order)
    total = sum(frames[p] for p in order)
    result: dict[str, list[Path]] = {name: [] for name in SPLITS}
    filled = dict.fromkeys(SPLITS, 0)
    # Each non-empty split gets one session first, then sessions go where the share is furthest behind.
    wanted = [name for name, f in zip(SPLITS, fractions, strict=True) if f > 0]
    for name, p in zip(wanted, order, strict=False):
        result[name].append(p)
        filled[name] += frames[p]
    share = dict(zip(SPLITS, fractions, strict=True))
    for p in order[len(wanted):]:
        name = max(wanted, key=lambda n: share[n] * total - filled[n])
        result[name].append(p)
        filled[name] += frames[p]
    result["train"] += corrections
    return result


def shares(parts: dict[str, list[Path]]) -> dict[str, float]:
    """Each split's share of the frames."""
    frames = {name: sum(_frames(p) for p in ps) for name, ps in parts.items()}
    total = max(sum(frames.values()), 1)
    return {name: n / total for name, n in frames.items()}


def _frames(path: Path) -> int:
    s = Session(path)
    try:
        return len(s)
    finally:
        s.close()


def share_warning(got: dict[str, float], fractions: tuple[float, float, float]) -> str | None:
    """A line when the whole sessions could not come near the asked shares (three sessions for 70/15/15 give
    something like 40/27/33): more, shorter sessions split closer. `got`: `shares` of the split."""
    asked = dict(zip(SPLITS, fractions, strict=True))
    if all(abs(got.get(name, 0.0) - asked[name]) <= 0.1 for name in SPLITS):
        return None
    pair = lambda d: "/".join(f"{100 * d.get(n, 0.0):.0f}" for n in SPLITS)  # noqa: E731
    return (f"WARNING: sessions split whole give {pair(got)}% of the frames to train/val/test, not the asked "
            f"{pair(asked)}%: record more, shorter sessions for a closer split")


def write_split(parts: dict[str, list[Path]], path: Path) -> None:
    """The split as YAML at `path` (its folder is created), session paths relative to that folder, so the file
    works from any working directory and moves with its sessions."""
    check_output(path, "split")
    here = path.parent.resolve()
    rel = lambda p: os.path.relpath(Path(p).resolve(), here)  # noqa: E731
    with whole(path) as part:
        part.write_text(yaml.safe_dump({name: [rel(p) for p in ps] for name, ps in parts.items()}, sort_keys=False))


def read_split(path: Path) -> dict[str, list[Path]]:
    """A split file from `write_split` (or by hand): relative paths are read against the file's folder; every
    session must exist."""
    data = read_yaml(path, "split file", f"lists of sessions under {', '.join(SPLITS)}")
    if not set(data) <= set(SPLITS):
        raise Crew2Error(f"{path}: not a split file (it lists sessions under {', '.join(SPLITS)})")
    def resolve(p: str) -> Path:  # against the file's folder; a file written before that: the working directory
        here = path.parent / p
        return here if here.is_file() or not Path(p).is_file() else Path(p)

    parts = {name: [resolve(str(p)) for p in data.get(name) or []] for name in SPLITS}
    missing = [str(p) for ps in parts.values() for p in ps if not p.is_file()]
    if missing:
        raise Crew2Error(f"{path}: {len(missing)} session(s) not found, first {missing[0]}")
    return parts


def merge(paths: list[Path], out: Path) -> int:
    """Concatenate sessions recorded with the same keys and resolution into one file; times continue
    where the previous session ended. Returns the number of frames."""
    sessions = [Session(p) for p in paths]
    for s in sessions:
        if s.being_written():
            raise Crew2Error(f"{s.path} is still being recorded: merge it once its recording has stopped")
    first = sessions[0].meta
    for p, s in zip(paths, sessions, strict=True):
        if (s.meta.keys, s.meta.width, s.meta.height) != (first.keys, first.width, first.height):
            raise Crew2Error(f"{p} has keys {s.meta.keys} at {s.meta.width}x{s.meta.height}, the first "
                             f"{first.keys} at {first.width}x{first.height}: only like sessions merge")
    meta = first.__class__(**{**first.__dict__, "source": "merged", "created": ""})
    offset = 0.0
    if out.exists():
        raise Crew2Error(f"{out} exists already: choose another name (nothing was overwritten)")
    with whole(out) as part, SessionWriter(part, meta) as w:
        for s in sessions:
            times = s.times()
            for i in range(len(s)):
                # The JPEG bytes are copied as they are: merging never re-encodes a frame.
                w.append(s.f[FRAMES][i], s.f[KEYS][i], offset + times[i] - times[0], s.boxes(i),
                         int(s.f[BOX_SOURCE][i]))
            offset += (times[-1] - times[0] if len(times) else 0.0) + 1.0 / first.fps
            s.close()
        return w.n


def overlay(frame: np.ndarray, keys: list[str], vector: np.ndarray, boxes: np.ndarray,
            class_names: list[str], scale: int = 3) -> np.ndarray:
    """The frame enlarged, with the pressed keys and the boxes drawn on it (BGR, for OpenCV)."""
    h, w = frame.shape[:2]
    img = cv2.resize(frame[:, :, ::-1], (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    for x1, y1, x2, y2, c in boxes:
        name = class_names[int(c)] if int(c) < len(class_names) else str(int(c))
        p1, p2 = (int(x1 * scale), int(y1 * scale)), (int(x2 * scale), int(y2 * scale))
        cv2.rectangle(img, p1, p2, (255, 0, 255), 1)
        cv2.putText(img, name, (p1[0], max(p1[1] - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 0, 255), 1)
    x = 8
    for k, on in zip(keys, vector, strict=True):
        label = k.upper()
        size = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)[0]
        cv2.rectangle(img, (x - 4, h * scale - 30), (x + size[0] + 4, h * scale - 6),
                      (40, 200, 40) if on else (60, 60, 60), -1)
        cv2.putText(img, label, (x, h * scale - 11), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        x += size[0] + 14
    return img


def write_mp4(path: Path, out: Path, scale: int = 3, on_frame: Callable[[], None] | None = None) -> int:
    """The session as a video with keys and boxes drawn; returns the number of frames written (`on_frame` after
    each: progress)."""
    s = Session(path)
    meta = s.meta
    writer = Mp4Writer(out, meta.fps)
    try:
        keys = s.keys()
        for i in range(len(s)):
            writer.write(overlay(s.frame(i), meta.keys, keys[i], s.boxes(i), meta.class_names, scale))
            if on_frame is not None:
                on_frame()
    finally:
        writer.close()
        s.close()
    return len(keys)


def play(path: Path, scale: int = 3) -> None:
    """Show the session in a window at its recorded speed, keys and boxes drawn; Space pauses, Q quits."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # OpenCV's Qt backend aborts the process without a display instead of raising: check first.
        raise Crew2Error("no display to open a window on: use --mp4 to write a video instead")
    fonts = Path("/usr/share/fonts/truetype/dejavu")  # OpenCV's Qt ships no fonts and complains each frame
    if fonts.is_dir():
        os.environ.setdefault("QT_QPA_FONTDIR", str(fonts))
    s = Session(path)
    keys, delay = s.keys(), max(1, int(1000 / s.meta.fps))
    title = f"crew2 data view: {path.name}"
    try:
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no toolbar: just the frames
        for i in range(len(s)):
            cv2.imshow(title, overlay(s.frame(i), s.meta.keys, keys[i], s.boxes(i), s.meta.class_names, scale))
            k = cv2.waitKey(delay) & 0xFF
            if k == ord("q") or cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1:
                break
            if k == ord(" "):
                cv2.waitKey(0)
    except cv2.error as e:
        raise Crew2Error(f"cannot open a window ({e.msg.strip()}): use --mp4 on a machine without a display") from e
    finally:
        cv2.destroyAllWindows()
        s.close()
