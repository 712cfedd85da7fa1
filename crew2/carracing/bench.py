"""`crew2 bench carracing`: does crew2 learn a game it did not write, from a few minutes of play?

Gymnasium's CarRacing-v3 runs in a real window (under Xvfb when there is no display); the scripted expert plays
it through XTest for `minutes` of wall clock, one track per `crew2 record --source window` session; then
`crew2 train` with its defaults, `crew2 export`, and `crew2 drive --source window` on held-out tracks, with and
without crash prevention. crew2 sees the game only as a user's crew2 would: its window and the X keyboard.
The game's own score is reported per track for the expert and for crew2, and as a ratio. With `takeover_rounds`,
each round is what a user teaching crew2 does (HG-DAgger): crew2 drives other tracks with `--corrections` while the
expert, as the person, takes the keys whenever the car is in trouble; `crew2 train --pretrained` the last model on
the recordings and every round's corrections; the new model drives the held-out tracks again. Every stage is a
subprocess; a stage whose output exists is not run again (delete it to redo), so a recipe can be retrained on
the same recordings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crew2 import x11
from crew2.carracing.expert import KEYS, ROLES
from crew2.carracing.game import FPS, FRAMES, TITLE
from crew2.errors import Crew2Error

log = logging.getLogger(__name__)
MIN_TRACK_SECONDS = 2.0  # a budget's remainder shorter than this is not recorded
BOX2D = "box2d>=2.3.10"  # keep in step with pyproject.toml's carracing extra


@dataclass
class CarRacingConfig:
    out: Path
    minutes: float = 2.5  # the data budget: wall-clock minutes of the expert's play that are recorded
    train_seeds: int = 1000  # recorded tracks are seeds train_seeds, train_seeds + 1, ... until the budget is spent
    test_seeds: tuple[int, ...] = (1, 2, 3, 4, 5)  # held-out tracks (never recorded)
    fps: float = 20.0  # crew2 record's
    drive_fps: float | None = None  # crew2 drive's control rate; None: its default
    start_delay: float = 0.7  # the expert's wait at each start before pressing, as a person's
    train_options: tuple[str, ...] = ()  # passed to crew2 train after its defaults
    fusion: tuple[bool, ...] = (True, False)  # drive with crash prevention, then without
    track_frames: int = FRAMES  # a track ends after this many of the game's frames (shorter: smoke runs)
    takeover_rounds: int = 0  # HG-DAgger rounds after the first model, the expert taking over as the person
    takeover_tracks: int = 8  # tracks crew2 drives, guarded, in each round
    guard_grace_s: float = 1.0  # the expert takes over when crew2 still stands this long into a guarded track

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.minutes <= 0:
            raise Crew2Error(f"--minutes must be positive, not {self.minutes}")
        if self.track_frames < 1:
            raise Crew2Error(f"a track needs at least one frame, not {self.track_frames}")
        if not self.test_seeds:
            raise Crew2Error("give at least one held-out track")
        if self.takeover_rounds < 0 or self.takeover_tracks < 1:
            raise Crew2Error("--takeover-rounds must be zero or more, with at least one track a round")
        if set(self.test_seeds) & set(range(self.train_seeds, self.train_seeds + 1000)):
            raise Crew2Error("held-out tracks must not be among the recorded ones")


@dataclass
class CarRacingResult:
    expert: list[dict]
    crew2: dict[str, list[dict]]  # "rules" / "no rules" -> one record per held-out track
    recorded_minutes: float
    sessions: int
    train_seconds: float
    keys: dict[str, dict[str, float]] = field(default_factory=dict)  # driver -> share of frames each role is down
    rounds: list[dict] = field(default_factory=list)  # per takeover round: takeovers, corrections, training

    def means(self) -> dict[str, float]:
        """Mean score over the held-out tracks: "expert" and each crew2 drive."""
        mean = lambda rs: sum(r["score"] for r in rs) / len(rs) if rs else float("nan")  # noqa: E731
        return {"expert": mean(self.expert), **{name: mean(rs) for name, rs in self.crew2.items()}}

    def summary(self) -> dict:
        means = self.means()
        return {"recorded_minutes": round(self.recorded_minutes, 2), "sessions": self.sessions,
                "train_seconds": round(self.train_seconds), "mean": {k: round(v, 1) for k, v in means.items()},
                "ratio": {k: round(means[k] / means["expert"], 3) for k in self.crew2}, "rounds": self.rounds}


CREW2 = [sys.executable, "-m", "crew2"]  # this crew2's command line in a subprocess, as crew2.bench runs it


def ensure_game() -> None:
    """CarRacing needs Box2D (crew2's `carracing` extra): install it into this environment once. Its PyPI
    wheels (box2d 2.3.10) need no compiler, unlike gymnasium[box2d]'s box2d-py."""
    try:
        import Box2D  # noqa: F401
    except ImportError:
        log.warning("installing box2d for CarRacing-v3 (crew2's optional carracing extra)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", BOX2D], check=True)


class Stage:
    """Subprocesses of one stage, with their output in the run's log folder; all are stopped on the way out."""

    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs, self.env, self.procs = logs, env, []

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "w") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=self.env, stdin=subprocess.DEVNULL)
        self.procs.append((name, proc))
        return proc

    def run(self, name: str, args: list[str], timeout: float) -> None:
        proc = self.start(name, args)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Crew2Error(f"{name} ran past {timeout:.0f} s: see {self.logs / (name + '.log')}") from None
        if rc != 0:
            raise Crew2Error(f"{name} failed (exit {rc}): see {self.logs / (name + '.log')}")

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """SIGTERM, which crew2 takes as Ctrl+C: a process started in the background (`cmd &` in a script)
        inherits SIGINT ignored, and a stop by SIGINT would wait for the kill."""
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc) -> None:
        for _, proc in reversed(self.procs):
            self.stop(proc, timeout=10)


def _game(cfg: CarRacingConfig, seeds: list[int], results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "crew2.carracing.game", "--seeds", ",".join(map(str, seeds)),
            "--results", str(results), "--frames", str(cfg.track_frames), *extra]


def _track_timeout(cfg: CarRacingConfig, tracks: int) -> float:
    """Seconds to allow for `tracks` tracks: three times their length at the game's frame rate, and a minute."""
    return tracks * 3 * cfg.track_frames / FPS + 60


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _wait_for(check: Callable[[], bool], timeout: float, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for proc in procs:
            if proc.poll() is not None:
                raise Crew2Error(f"{what}: {proc.args[0]} ... ended early (exit {proc.returncode})")
        if time.monotonic() > deadline:
            raise Crew2Error(f"{what}: nothing after {timeout:.0f} s")
        time.sleep(0.1)


def record_sessions(cfg: CarRacingConfig, stage: Stage, sessions: Path) -> float:
    """The expert plays track after track, each recorded as its own session, until `minutes` of play are spent.
    Returns the minutes recorded."""
    sessions.mkdir(parents=True, exist_ok=True)
    spent, seed = 0.0, cfg.train_seeds
    while 60 * cfg.minutes - spent > MIN_TRACK_SECONDS:
        path = sessions / f"track{seed}.h5"
        results = stage.logs / "recorded.jsonl"
        game = stage.start(f"game-{seed}", _game(cfg, [seed], results, "--expert", "--wait", "--start-delay",
                                                 str(cfg.start_delay), "--minutes", f"{cfg.minutes - spent / 60:.4f}"))
        time.sleep(1.0)  # the window is up (the recorder fails clearly if not)
        rec = stage.start(f"record-{seed}", [*CREW2, "record", "--source", "window", "--window", TITLE,
                                             "--keys", ",".join(KEYS), "--fps", str(cfg.fps), "--countdown", "0",
                                             "--out", str(path)])
        _wait_for(path.exists, 60, f"recording {path}", [rec, game])
        started = time.monotonic()
        game.send_signal(signal.SIGUSR1)  # go
        n = len(_lines(results))
        _wait_for(lambda n=n, results=results: len(_lines(results)) > n, _track_timeout(cfg, 1), f"track {seed}",
                  [game])
        spent += time.monotonic() - started
        if rc := stage.stop(rec):
            raise Crew2Error(f"crew2 record failed (exit {rc}): see {stage.logs / f'record-{seed}.log'}")
        stage.stop(game)
        seed += 1
    return spent / 60


def drive_tracks(cfg: CarRacingConfig, stage: Stage, weights: Path, name: str, fusion: bool,
                 seeds: list[int] | None = None, corrections: Path | None = None) -> list[dict]:
    """crew2 drives the held-out tracks (or `seeds`) back to back in one game window; one record per track. With
    `corrections`, the expert guards the drive as the person and crew2 stores its takeovers there."""
    seeds = list(cfg.test_seeds) if seeds is None else seeds
    results, drive_log = stage.logs / f"{name}.jsonl", stage.logs / f"{name}-frames.jsonl"
    results.unlink(missing_ok=True)
    guard = ("--guard", str(cfg.guard_grace_s)) if corrections else ()
    game = stage.start(f"game-{name}", _game(cfg, seeds, results, "--wait", *guard))
    time.sleep(1.0)
    drive = stage.start(f"drive-{name}", [*CREW2, "drive", str(weights), "--source", "window", "--window",
                                          TITLE, *(("--fps", str(cfg.drive_fps)) if cfg.drive_fps else ()),
                                          "--countdown", "0",
                                          "--log", str(drive_log),
                                          *(() if fusion else ("--no-fusion",)),
                                          *(("--corrections", str(corrections)) if corrections else ())])
    _wait_for(lambda: drive_log.exists() and drive_log.stat().st_size > 0, 120, f"crew2 drive ({name})", [drive, game])
    game.send_signal(signal.SIGUSR1)
    _wait_for(lambda: len(_lines(results)) >= len(seeds), _track_timeout(cfg, len(seeds)), f"driving ({name})",
              [drive, game])
    stage.stop(drive)
    stage.stop(game)
    return _lines(results)


def role_shares(frames_log: Path, roles: dict[str, str]) -> dict[str, float]:
    """Share of the driven frames in which each role's key went out (from `crew2 drive --log`)."""
    entries = _lines(frames_log)
    return {role: round(sum(key in e["pressed"] for e in entries) / max(len(entries), 1), 3)
            for role, key in roles.items()}


def run(cfg: CarRacingConfig, on_stage: Callable[[str], None] = lambda s: None) -> CarRacingResult:
    ensure_game()
    logs, sessions, model = cfg.out / "logs", cfg.out / "sessions", cfg.out / "model"
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        display = os.environ.get("DISPLAY") or stack.enter_context(x11.virtual_display())
        env = {**os.environ, "DISPLAY": display, "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
        stage = stack.enter_context(Stage(logs, env))
        expert_results = logs / "expert.jsonl"
        if len(_lines(expert_results)) < len(cfg.test_seeds):
            on_stage("the expert plays the held-out tracks")
            expert_results.unlink(missing_ok=True)
            stage.run("expert", _game(cfg, list(cfg.test_seeds), expert_results, "--expert"),
                      _track_timeout(cfg, len(cfg.test_seeds)))
        done = logs / "recorded.json"
        if not done.exists():
            on_stage(f"the expert plays {cfg.minutes:g} min of other tracks, recorded by crew2 record")
            shutil.rmtree(sessions, ignore_errors=True)
            (logs / "recorded.jsonl").unlink(missing_ok=True)
            minutes = record_sessions(cfg, stage, sessions)
            done.write_text(json.dumps({"minutes": minutes}))
        recorded = json.loads(done.read_text())["minutes"]
        train_seconds = train(cfg, stage, model, [sessions], on_stage, "crew2 train (defaults), crew2 export")
        crew2: dict[str, list[dict]] = {}
        keys = {"expert (recorded)": _recorded_shares(sessions)}
        drive_held_out(cfg, stage, model / "best.onnx", "", crew2, keys, on_stage)
        rounds = []
        for r in range(1, cfg.takeover_rounds + 1):
            rounds.append(takeover_round(cfg, stage, r, model, on_stage))
            model = cfg.out / f"model-round{r}"
            fixes = sorted((cfg.out / "corrections").glob("*.h5"))  # a round without a takeover left none
            rounds[-1]["train_seconds"] = round(train(
                cfg, stage, model, [sessions, *fixes], on_stage,
                f"round {r}: crew2 train on the recordings and the corrections, from the last model",
                "--pretrained", str(cfg.out / ("model" if r == 1 else f"model-round{r - 1}") / "best.pt")))
            drive_held_out(cfg, stage, model / "best.onnx", f" after {r} takeover round{'s' * (r > 1)}", crew2, keys,
                           on_stage)
    result = CarRacingResult(_lines(expert_results), crew2, recorded, len(list(sessions.glob("*.h5"))),
                             train_seconds, keys, rounds)
    (cfg.out / "result.json").write_text(json.dumps({**result.summary(), "expert": result.expert, "crew2": crew2,
                                                     "keys": keys}, indent=1))
    return result


def train(cfg: CarRacingConfig, stage: Stage, model: Path, data: list[Path], on_stage: Callable[[str], None],
          what: str, *options: str) -> float:
    """`crew2 train` into `model` (unless its export exists), then `crew2 export`; the seconds training took."""
    seconds = model / "train_seconds.txt"
    if not (model / "best.onnx").exists():
        on_stage(what)
        t0 = time.monotonic()
        stage.run(f"train-{model.name}", [*CREW2, "train", *map(str, data), "--out", str(model), *options,
                                          *cfg.train_options], 4 * 3600)
        seconds.write_text(f"{time.monotonic() - t0:.0f}\n")
        stage.run(f"export-{model.name}", [*CREW2, "export", str(model / "best.pt")], 600)
    return float(seconds.read_text()) if seconds.exists() else 0.0


def drive_held_out(cfg: CarRacingConfig, stage: Stage, weights: Path, suffix: str, crew2: dict[str, list[dict]],
                   keys: dict[str, dict[str, float]], on_stage: Callable[[str], None]) -> None:
    """crew2 drives the held-out tracks with and without crash prevention (`cfg.fusion`); adds to `crew2`, `keys`."""
    for fusion in cfg.fusion:
        name = ("rules" if fusion else "no rules") + suffix
        on_stage(f"crew2 drive --source window on the held-out tracks, {name}")
        crew2[name] = drive_tracks(cfg, stage, weights, name.replace(" ", "-"), fusion)
        keys[f"crew2 ({name})"] = role_shares(stage.logs / f"{name.replace(' ', '-')}-frames.jsonl", ROLES)


def takeover_round(cfg: CarRacingConfig, stage: Stage, r: int, model: Path, on_stage: Callable[[str], None]) -> dict:
    """crew2 drives `takeover_tracks` new tracks with --corrections while the expert guards it as the person."""
    path = cfg.out / "corrections" / f"round{r}.h5"
    summary = stage.logs / f"round{r}.json"
    if not summary.exists():
        on_stage(f"round {r}: crew2 drives {cfg.takeover_tracks} other tracks; the expert takes over in trouble")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        seeds = [cfg.train_seeds + 100 * r + i for i in range(cfg.takeover_tracks)]
        tracks = drive_tracks(cfg, stage, model / "best.onnx", f"round{r}-guarded", True, seeds, path)
        from crew2.data.session import Session

        session = Session(path)
        frames, fps = len(session), session.meta.fps
        session.close()
        if not frames:
            path.unlink()  # nothing to learn from
        frames_log = _lines(stage.logs / f"round{r}-guarded-frames.jsonl")  # what crew2 saw: who drove each frame
        summary.write_text(json.dumps({
            "round": r, "tracks": len(tracks), "takeovers": max((e["takeovers"] for e in frames_log), default=0),
            "person_share": round(sum(e["driver"] == "person" for e in frames_log) / max(len(frames_log), 1), 3),
            "guard_takeovers": sum(t.get("takeovers", 0) for t in tracks),
            "correction_frames": frames, "correction_seconds": round(frames / fps, 1),
            "score": round(sum(t["score"] for t in tracks) / max(len(tracks), 1), 1)}))
    return json.loads(summary.read_text())


def _recorded_shares(sessions: Path) -> dict[str, float]:
    """Share of the recorded frames in which each role's key was down (what the network learns from)."""
    import numpy as np

    from crew2.data.session import Session

    keys = []
    for path in sorted(sessions.glob("*.h5")):
        session = Session(path)
        keys.append(session.keys())
        session.close()
    if not keys:
        return {}
    k = np.concatenate(keys)
    return {role: round(float(k[:, KEYS.index(key)].mean()), 3) for role, key in ROLES.items()}
