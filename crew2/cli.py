"""crew2's command line: parses options, builds a config, calls the library, turns errors into exit codes."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from crew2 import __version__
from crew2.errors import Crew2Error
from crew2.model import engine_for
from crew2.model.pickles import TRUST_HELP
from crew2.outputs import check_output, whole
from crew2.shipped import given, shipped

# Markdown help: a docstring's paragraphs are rewrapped to the terminal (the default "rich" keeps every line
# break of the source, so they came out ragged).
HELP = {"rich_markup_mode": "markdown"}
app = typer.Typer(help="Teach a neural network to play a driving game from its screen.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, **HELP)
bench_app = typer.Typer(help="Measure crew2: run every benchmark, or one of them.", invoke_without_command=True,
                        **HELP)
app.add_typer(bench_app, name="bench")
data_app = typer.Typer(help="Inspect, check, split, merge and view recorded sessions.", no_args_is_help=True, **HELP)
app.add_typer(data_app, name="data")
annotate_app = typer.Typer(help="Annotate obstacle frames: select, auto (sim, teacher), review, export, import.",
                           no_args_is_help=True, **HELP)
app.add_typer(annotate_app, name="annotate")
out = Console()
out.soft_wrap = not out.is_terminal  # in a log, a line per message: rich would wrap it at 80 columns, mid-number
err = Console(stderr=True)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A Crew2Error becomes one red line on stderr and exit code 2, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Crew2Error as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as e:  # a full disk, a folder that is a file, no permission: the system's words, one line
            where = f"{e.filename}: " if e.filename else ""
            err.print(f"[red]error:[/red] {where}{e.strerror or e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except MemoryError:
            err.print("[red]error:[/red] not enough memory for that (a smaller --width, --batch or fewer frames)",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


# Options shared by the commands that run the simulator.
Seed = Annotated[int, typer.Option(help="Episode seed: the same seed gives the same road, traffic and looks.")]
Lanes = Annotated[int, typer.Option(help="Lanes on the road (2-4).")]
Traffic = Annotated[float, typer.Option(help="Vehicles per 100 m per lane around the player.")]
Obstacles = Annotated[float, typer.Option(help="Groups of cones/barriers per km.")]
TrackKm = Annotated[float, typer.Option("--track-km", help="Length of each episode's road, km.")]
Randomize = Annotated[bool, typer.Option(help="Random colours, light, fog and camera per episode.")]
BandZoom = Annotated[float, typer.Option(
    "--band", help="Store a strip across the horizon this many times closer under each frame, for the obstacle head "
                   "to see far (4: a 1024x576 picture or larger; 0: none).")]
BandAt = Annotated[float, typer.Option(help="--band: the strip's centre, as a share of the frame's height from its "
                                            "top: on the game's horizon, or a little below it to see nearer (the "
                                            "simulator's horizon is at 0.42).")]
Sessions = Annotated[list[Path], typer.Argument(help="Session files, or folders holding them.")]
BoxRules = Annotated[str, typer.Option(help="Crash prevention's rules that act on the network's boxes: auto (on "
                                            "when its obstacle head was trained), on or off.")]
WindowTitle = Annotated[str | None, typer.Option(
    help="--source window: part of the game window's title, or its program (TheCrew2.exe, on Windows and under "
         "Proton); windows titled alike are listed, not guessed.")]
Capture = Annotated[str, typer.Option(
    help="--source window: how the window is read. wgc (Windows): the window itself, even when covered; mss: the "
         "screen where it is; auto: wgc where it starts, else mss.")]


def sim_config(width: int, height: int, lanes: int, traffic: float, obstacles: float, track_km: float,
               randomize: bool, fps: float = 20.0, max_seconds: float = 180.0):
    from crew2.sim.world import SimConfig

    return SimConfig(width=width, height=height, lanes=lanes, traffic=traffic, obstacles=obstacles,
                     track_km=track_km, randomize=randomize, fps=fps, max_seconds=max_seconds)


def key_values(items: list[str], option: str) -> dict[str, float]:
    """["s=0.9", ...] -> {"s": 0.9}; anything else is a clear error naming the option."""
    result = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            result[key.strip()] = float(value)
        except ValueError:
            raise Crew2Error(f"{option} {item}: write KEY=VALUE, for example s=0.9") from None
    return result


EPISODE_COLUMNS = ("distance_m", "avg_speed_kmh", "collisions", "collisions_per_km", "offroad_s", "score")


def print_episodes(results: list[dict[str, float]], title: str) -> None:
    """One row per episode and a bold row of means."""
    from crew2.sim.episodes import mean_summary

    table = Table(title=title)
    for col in ("seed", *EPISODE_COLUMNS):
        table.add_column(col.replace("_", " "), justify="right")
    for r in results:
        table.add_row(str(r["seed"]), *(str(r[c]) for c in EPISODE_COLUMNS))
    mean = mean_summary(results)
    table.add_row("mean", *(str(mean[c]) for c in EPISODE_COLUMNS), style="bold")
    out.print(table)


@contextmanager
def frames_progress(what: str, paths: list[Path]):
    """A progress bar over every frame of the sessions (rich, gone when done); yields advance(n=1)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from crew2.data.session import Session

    total = 0
    for p in paths:
        try:
            s = Session(p)
        except Crew2Error:
            continue  # a file that does not open: the job itself says so
        total += len(s)
        s.close()
    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn("frames"), TimeRemainingColumn(),
                  console=out, transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n=1: progress.advance(task, n)


def print_detection(metrics: dict[str, float], class_names: list[str], score: float, title: str) -> None:
    """Per class: mAP50 and the recall by box height at the score crash prevention acts on (`DetectionScore`)."""
    from crew2.detection.metrics import TALL, height_bins

    if all(math.isnan(metrics.get(f"recall_{c}_{b}", math.nan)) for c in class_names for b in height_bins()):
        return  # no annotated frames
    table = Table(title=f"{title}: mAP50 {metrics['map50']:.3f} (boxes >= {TALL} px tall: "
                        f"{metrics['map50_tall']:.3f}); recall at score {score:g} by box height")
    table.add_column("class")
    for col in ("mAP50", *height_bins()):
        table.add_column(col, justify="right")
    cell = (lambda v: "-" if math.isnan(v) else f"{v:.2f}")  # noqa: E731
    for c in class_names:
        table.add_row(c, cell(metrics.get(f"map50_{c}", math.nan)),
                      *(cell(metrics.get(f"recall_{c}_{b}", math.nan)) for b in height_bins()))
    out.print(table)


def write_json(path: Path | None, payload: Any) -> None:
    if path is not None:
        check_output(path, "json")
        with whole(path) as part:
            part.write_text(json.dumps(payload, indent=2) + "\n")
        out.print(f"wrote {path}")


@app.command()
@user_errors
def sim(
    autopilot: Annotated[bool, typer.Option(help="Let the expert drive instead of the keyboard.")] = False,
    guard: Annotated[bool, typer.Option(
        help="The keyboard drives (crew2 drive --source window); the autopilot takes over through XTest when the "
             "car is in trouble, as a person correcting crew2 would (a takeover benchmark).")] = False,
    headless: Annotated[bool, typer.Option(help="No window: the autopilot drives episodes flat out.")] = False,
    episodes: Annotated[int | None, typer.Option(help="Stop after this many episodes.")] = None,
    seconds: Annotated[float | None, typer.Option(help="Close the window after this many seconds.")] = None,
    seed: Seed = 0,
    width: Annotated[int, typer.Option(help="Frame width, px.")] = 640,
    height: Annotated[int, typer.Option(help="Frame height, px.")] = 360,
    scale: Annotated[int, typer.Option(help="Window pixels per frame pixel.")] = 1,
    fps: Annotated[float, typer.Option(help="Game steps per second.")] = 30.0,
    lanes: Lanes = 3, traffic: Traffic = 1.0, obstacles: Obstacles = 1.0, track_km: TrackKm = 5.0,
    randomize: Randomize = False,
    noise: Annotated[float, typer.Option(help="Headless autopilot: key perturbations per second (DART).")] = 0.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the episode summaries here.")] = None,
) -> None:
    """Play the built-in driving game in a window (WASD or arrows), or watch the autopilot drive it.

    The window is titled "crew2 sim", so `--source window` can record or drive it like any game."""
    if scale < 1:
        raise Crew2Error(f"--scale must be 1 or more, not {scale}")
    if episodes is not None and episodes < 1:
        raise Crew2Error(f"--episodes must be 1 or more, not {episodes}")
    config = sim_config(width, height, lanes, traffic, obstacles, track_km, randomize, fps)
    if headless:
        from crew2.sim.episodes import run_autopilot

        results = run_autopilot(config, range(seed, seed + (episodes or 1)), noise=noise)
        print_episodes(results, "autopilot, headless")
    else:
        from crew2.sim.window import WindowOptions, play

        results = play(config, WindowOptions(seed=seed, autopilot=autopilot, guard=guard, scale=scale,
                                             seconds=seconds, episodes=episodes))
        print_episodes(results, "autopilot" if autopilot else "the keyboard, guarded" if guard else "you")
    write_json(json_out, results)


@app.command()
@user_errors
def demo(
    episodes: Annotated[int, typer.Option(help="Episodes to drive.")] = 3,
    seed: Seed = 1000,
    seconds: Annotated[float, typer.Option(help="Length of each episode, s.")] = 60.0,
    show: Annotated[bool, typer.Option(help="Watch it in a window, in real time, with the model's overlays.")]
    = False,
    weights: Annotated[Path | None, typer.Option(help="Another model (default: the one shipped in weights/).",
                                                 callback=given)]
    = None,
    fusion: Annotated[bool, typer.Option(help="Crash prevention on (--no-fusion to compare without).")] = True,
    mp4: Annotated[Path | None, typer.Option(help="A video of the first episode with the model's overlays.")]
    = None,
) -> None:
    """The shipped driver plays the built-in simulator on held-out seeds, with live telemetry; then a summary
    next to the expert autopilot on the same seeds. Headless (and faster than real time) unless --show."""
    if episodes < 1 or seconds <= 0:  # before the imports, which take seconds
        raise Crew2Error("--episodes must be 1 or more and --seconds positive")
    from crew2.drive.run import DriveConfig, box_rules, sim_for
    from crew2.io.control import Control
    from crew2.model.engine import DEFAULT_WEIGHTS, load_engine
    from crew2.sim.episodes import mean_summary, run_autopilot

    weights = weights or DEFAULT_WEIGHTS.with_suffix(".onnx")
    if not weights.is_file():
        raise Crew2Error(f"{weights}: no such model (give --weights)")
    model = load_engine(weights, threads=1)
    sim = sim_for(model.info, track_km=5.0, max_seconds=seconds)
    seeds = list(range(seed, seed + episodes))
    results = []
    if fusion:
        out.print(box_rules("auto", model.info)[1], highlight=False, soft_wrap=True)
    control = Control()  # Esc in the window, Ctrl+C or SIGTERM stop the episode and the demo
    for i, s in enumerate(seeds):
        config = DriveConfig(weights=weights, source="sim", fps=sim.fps, fusion=fusion, countdown=0, seed=s, sim=sim,
                             show=show, mp4=mp4 if i == 0 else None)
        result = drive_live(config, model, title=f"crew2 demo: episode {i + 1}/{episodes}, seed {s}", control=control)
        results.append({"seed": s, **result.sim})
        if control.stop.is_set():
            break
    print_episodes(results, f"crew2 demo: {weights.name} on held-out seeds" + ("" if fusion else ", no fusion"))
    with out.status("the autopilot on the same seeds…"):
        expert = mean_summary(run_autopilot(sim, [r["seed"] for r in results]))
    mine = mean_summary(results)
    out.print(f"the expert autopilot on the same seeds: {expert['distance_m']:g} m per episode, "
              f"{expert['avg_speed_kmh']:g} km/h, {expert['collisions_per_km']:g} collisions/km; the model drove "
              f"{100 * mine['distance_m'] / max(expert['distance_m'], 1e-9):.0f}% of its distance", soft_wrap=True)
    if mp4 is not None:
        out.print(f"wrote {mp4}")


@bench_app.callback()
def bench(
    ctx: typer.Context,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write every result here.")] = None,
) -> None:
    """Without a subcommand, run every benchmark into one table."""
    if ctx.invoked_subcommand is None:
        bench_all(json_out)


@user_errors
def bench_all(json_out: Path | None) -> None:
    import tempfile

    from crew2.bench import bench_data, bench_loop, bench_model, bench_sim, machine, one_core

    with out.status("benchmarking the simulator…"), one_core() as pinned:
        sim = bench_sim(sim_config(256, 144, 3, 1.0, 1.0, 5.0, False), seconds=5.0, seeds=5)
    with tempfile.TemporaryDirectory() as tmp, out.status("benchmarking storage, recording and loading…"):
        data = bench_data(Path(tmp))
    with tempfile.TemporaryDirectory() as tmp, out.status("benchmarking the model…"):
        model = bench_model(Path(tmp))
    with tempfile.TemporaryDirectory() as tmp, out.status("benchmarking the drive loop…"):
        loop = bench_loop(Path(tmp))
    print_results("crew2 bench", {**{f"sim.{k}": v for k, v in sim.items()},
                                  **{f"data.{k}": v for k, v in data.items()},
                                  **{f"model.{k}": v for k, v in model.items()},
                                  **{f"loop.{k}": v for k, v in loop.items()}})
    write_json(json_out, {"machine": machine(), "sim_one_core": pinned, "sim": sim, "data": data, "model": model,
                          "loop": loop})


def print_results(title: str, results: dict[str, Any]) -> None:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in results.items():
        table.add_row(k, str(v))
    out.print(table)


@bench_app.command("carracing")
@user_errors
def bench_carracing_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder: sessions, model, logs, result.json.")] = Path(
        "runs/carracing"),
    minutes: Annotated[float, typer.Option(help="Minutes of the expert's play to record (the data budget).")] = 2.5,
    tracks: Annotated[str, typer.Option(help="Held-out track seeds, comma-separated.")] = "1,2,3,4,5",
    train_seeds: Annotated[int, typer.Option(help="First seed of the recorded tracks.")] = 1000,
    fps: Annotated[float, typer.Option(help="crew2 record's frame rate.")] = 20.0,
    drive_fps: Annotated[float | None, typer.Option(help="crew2 drive's control rate [default: its own].")] = None,
    start_delay: Annotated[float, typer.Option(help="The expert's wait at each start, s (a person's).")] = 0.7,
    train_option: Annotated[list[str] | None, typer.Option(help="An extra crew2 train option (repeatable).")] = None,
    takeover_rounds: Annotated[int, typer.Option(
        help="Rounds of human takeover after the first model: crew2 drives other tracks with --corrections, the "
             "expert taking over in trouble as the person; train from the last model; drive the held-out "
             "tracks again.")] = 0,
    takeover_tracks: Annotated[int, typer.Option(help="Tracks crew2 drives, guarded, in each round.")] = 8,
) -> None:
    """A game crew2 did not write: Gymnasium's CarRacing-v3 in a real window, learned from the expert's play.

    Installs Box2D (the carracing extra) if missing; starts Xvfb when there is no display. About 20-30 minutes
    on 2 cores, and about 25 more a takeover round."""
    from crew2.carracing.bench import CarRacingConfig, run

    try:
        seeds = tuple(int(s) for s in tracks.split(",") if s.strip())
    except ValueError:
        raise Crew2Error(f"--tracks must be comma-separated integers, not '{tracks}'") from None
    cfg = CarRacingConfig(out=out_dir, minutes=minutes, test_seeds=seeds, train_seeds=train_seeds, fps=fps,
                          drive_fps=drive_fps, start_delay=start_delay, train_options=tuple(train_option or ()),
                          takeover_rounds=takeover_rounds, takeover_tracks=takeover_tracks)
    with out.status("") as status:
        result = run(cfg, on_stage=lambda s: (status.update(s), out.print(f"[dim]{s}[/]")))
    table = Table(title=f"CarRacing-v3, held-out tracks: the game's score (crew2 trained on "
                        f"{result.recorded_minutes:.1f} min of play, {result.sessions} sessions)")
    table.add_column("track")
    table.add_column("expert", justify="right")
    for name in result.crew2:
        table.add_column(f"crew2 ({name})", justify="right")
    for i, e in enumerate(result.expert):
        table.add_row(str(e["seed"]), f"{e['score']:.0f}", *(f"{rs[i]['score']:.0f}" if i < len(rs) else "-"
                                                             for rs in result.crew2.values()))
    means = result.means()
    table.add_row("mean", f"{means['expert']:.0f}",
                  *(f"{means[n]:.0f} ({means[n] / means['expert']:.2f} of the expert's)" for n in result.crew2))
    out.print(table)
    for driver, shares in result.keys.items():
        out.print(f"{driver}: " + ", ".join(f"{role} {share:.0%}" for role, share in shares.items()))
    for r in result.rounds:
        out.print(f"takeover round {r['round']}: crew2 saw {r['takeovers']} takeovers on {r['tracks']} tracks, the "
                  f"expert drove {r['person_share']:.0%} of its frames; {r['correction_seconds']:g} s of corrections; "
                  f"trained {r['train_seconds']} s", highlight=False)
    out.print(f"wrote {cfg.out / 'result.json'}")


@bench_app.command("sim")
@user_errors
def bench_sim_cmd(
    seconds: Annotated[float, typer.Option(help="Wall time of the timing loop.")] = 5.0,
    seeds: Annotated[int, typer.Option(help="Autopilot episodes for the driving figures.")] = 5,
    width: Annotated[int, typer.Option(help="Frame width, px.")] = 256,
    height: Annotated[int, typer.Option(help="Frame height, px.")] = 144,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    """Headless simulator speed on one core (step + render, frames/s) and the autopilot's driving."""
    from crew2.bench import bench_sim, machine, one_core

    if seconds <= 0 or seeds < 1:
        raise Crew2Error("--seconds must be positive and --seeds at least 1")
    config = sim_config(width, height, 3, 1.0, 1.0, 5.0, False)
    with out.status("benchmarking the simulator…"), one_core() as pinned:
        result = bench_sim(config, seconds=seconds, seeds=seeds)
    print_results(f"crew2 bench sim ({'one core' if pinned else 'unpinned'})", result)
    write_json(json_out, {"machine": machine(), "one_core": pinned, "sim": result})


@bench_app.command("model")
@user_errors
def bench_model_cmd(
    weights: Annotated[Path | None, typer.Option(help="A checkpoint to time (default: the default model).")] = None,
    runs: Annotated[int, typer.Option(help="Timed runs per engine.")] = 300,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    """Batch-1 latency (both heads + NMS) through each engine next to the seed's DenseNet121, and CPU
    training throughput."""
    import tempfile

    from crew2.bench import bench_model, machine

    with tempfile.TemporaryDirectory() as tmp, out.status("benchmarking the model…"):
        result = bench_model(Path(tmp), weights, runs)
    print_results("crew2 bench model", result)
    write_json(json_out, {"machine": machine(), "model": result})


@bench_app.command("loop")
@user_errors
def bench_loop_cmd(
    weights: Annotated[Path | None, typer.Option(help="A checkpoint or ONNX file (default: the shipped model).")]
    = None,
    seconds: Annotated[float, typer.Option(help="Driving time per model.")] = 10.0,
    fps: Annotated[float, typer.Option(help="Control rate.")] = 30.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    """End-to-end latency of crew2 drive on a real window (screen grab -> keys sent through XTest), per stage,
    next to the seed-style DenseNet121 in the same run. Starts Xvfb when there is no display."""
    import tempfile

    from crew2.bench import bench_loop, machine

    if seconds <= 0:
        raise Crew2Error("--seconds must be positive")
    with tempfile.TemporaryDirectory() as tmp, out.status("benchmarking the drive loop…"):
        result = bench_loop(Path(tmp), weights, seconds=seconds, fps=fps)
    print_results("crew2 bench loop", result)
    write_json(json_out, {"machine": machine(), "loop": result})


@bench_app.command("data")
@user_errors
def bench_data_cmd(
    record_seconds: Annotated[float, typer.Option(help="Length of the 30 fps recording run.")] = 20.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    """Storage per frame (sim and natural-like frames), recording cadence at 30 fps through the real window
    path (starts Xvfb when there is no display), and training-loader samples/s with 2 workers."""
    import tempfile

    from crew2.bench import bench_data, machine

    with tempfile.TemporaryDirectory() as tmp, out.status("benchmarking storage, recording and loading…"):
        result = bench_data(Path(tmp), record_seconds=record_seconds)
    print_results("crew2 bench data", result)
    write_json(json_out, {"machine": machine(), "data": result})


@app.command()
@user_errors
def record(
    source: Annotated[str, typer.Option(help="Where frames come from: screen, window or sim.")] = "screen",
    window: WindowTitle = None,
    capture: Capture = "auto",
    region: Annotated[str | None, typer.Option(help="--source screen: LEFT,TOP,WIDTH,HEIGHT in pixels.")] = None,
    monitor: Annotated[int, typer.Option(help="--source screen: monitor number (1 = the first).")] = 1,
    profile: Annotated[str, typer.Option(help="Key profile: thecrew2, arrows, or a YAML file.")] = "thecrew2",
    keys: Annotated[str | None, typer.Option(help="Keys to record instead, e.g. up,left,right,down.")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Session file to write (.h5).")] = None,
    fps: Annotated[float, typer.Option(help="Frames per second to record (1-60).")] = 20.0,
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds of recording.")] = None,
    frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    width: Annotated[int, typer.Option(help="Stored frame width, px.")] = 256,
    height: Annotated[int, typer.Option(help="Stored frame height, px.")] = 144,
    quality: Annotated[int, typer.Option(help="JPEG quality of stored frames (50-100).")] = 90,
    countdown: Annotated[float, typer.Option(help="Seconds to switch to the game before recording starts.")] = 3.0,
    discard_seconds: Annotated[float, typer.Option(help="What F8 throws away, in seconds.")] = 5.0,
    seed: Seed = 0,
    noise: Annotated[float, typer.Option(help="sim: autopilot key perturbations per second (DART).")] = 0.0,
    late: Annotated[float, typer.Option(help="sim: share of the autopilot's lane changes held back 1-4 s.")] = 0.0,
    randomize: Randomize = False,
    traffic: Traffic = 1.0, obstacles: Obstacles = 1.0,
    band: BandZoom = 0.0, band_at: BandAt = 0.42,
) -> None:
    """Record a session: the game's frames and the keys you press, into one compressed HDF5 file.

    Hotkeys while recording: F9 pause/resume, F10 stop, F8 discard the last seconds; Ctrl+C stops too.
    With --source window, recording pauses by itself while the game window is not in front.
    --source sim records the built-in game driven by its autopilot, as fast as it renders, with the
    obstacles' ground-truth boxes."""
    from rich.live import Live

    from crew2.io.band import Band
    from crew2.keys import load_profile, profile_from_keys
    from crew2.record.run import RecordConfig, parse_region, record, status_line

    config = RecordConfig(
        source=source, out=out_path, fps=fps, width=width, height=height, quality=quality, seconds=seconds,
        frames=frames, profile=profile_from_keys(keys) if keys else load_profile(profile), window=window,
        capture=capture, region=parse_region(region) if region else None, monitor=monitor, countdown=countdown,
        discard_seconds=discard_seconds, seed=seed, noise=noise, late=late,
        band=Band(band, at=band_at) if band else None,
        sim=sim_config(width, height, 3, traffic, obstacles, 5.0, randomize, fps=fps) if source == "sim" else None)
    live = Live(console=out, refresh_per_second=4, transient=True)
    shown = [0.0]

    def show(stats) -> None:
        if time.monotonic() - shown[0] > 0.25:
            live.update(status_line(stats, config))
            shown[0] = time.monotonic()

    with live:
        stats = record(config, on_tick=show,
                             on_countdown=lambda left: live.update(f"recording starts in {left:.0f} s…"))
    out.print(status_line(stats, config, final=True), soft_wrap=True)
Dataset = Annotated[Path | None, typer.Option(help="Dataset YAML with the obstacle classes (default: the sim's).",
                                               callback=given)]


@annotate_app.command("select")
@user_errors
def annotate_select(
    sessions: Sessions,
    every: Annotated[int | None, typer.Option(help="Every n-th frame.")] = None,
    scene: Annotated[float | None, typer.Option(help="Scene changes: mean grey-level change above this.")] = None,
    hard: Annotated[bool, typer.Option(help="Frames where you braked or started/stopped steering.")] = False,
    unsure: Annotated[Path | None, typer.Option(help="A model (.pt/.onnx): frames where it is unsure.",
                                                callback=given)] = None,
    min_gap: Annotated[int, typer.Option(help="At least this many frames between chosen ones.")] = 5,
    budget: Annotated[int | None, typer.Option(help="At most this many frames per session.")] = None,
) -> None:
    """Choose the frames worth annotating and mark them in each session (review shows those)."""
    if unsure:
        engine_for(unsure)  # before the imports, which take seconds
    from crew2.data.tools import session_paths
    from crew2.detection.select import select
    from crew2.model.engine import load_engine

    engine = load_engine(unsure) if unsure else None
    for p in session_paths(sessions):
        chosen, counts = select(p, every, scene, hard, engine, min_gap, budget)
        out.print(f"{p.name}: {len(chosen)} frames selected ("
                  + ", ".join(f"{k} proposed {v}" for k, v in counts.items()) + ")")


@annotate_app.command("auto")
@user_errors
def annotate_auto(
    sessions: Sessions,
    from_: Annotated[str | None, typer.Option("--from", help="sim: rebuild the simulator's ground truth.")] = None,
    teacher: Annotated[Path | None, typer.Option(help="An Ultralytics detector (.pt) to pre-label with.")] = None,
    dataset: Dataset = None,
    conf: Annotated[float, typer.Option(help="Teacher: minimum confidence.")] = 0.4,
    frames: Annotated[str, typer.Option(help="Teacher: all frames, or only the selected ones.")] = "all",
    trust_pickle: Annotated[bool, typer.Option(help=f"Teacher: {TRUST_HELP}")] = False,
) -> None:
    """Annotate automatically: --from sim (exact ground truth) or --teacher MODEL.pt (pre-labels to review)."""
    from crew2.data.tools import session_paths
    from crew2.detection.classes import load_spec

    if (from_ is None) == (teacher is None):
        raise Crew2Error("give exactly one of --from sim and --teacher MODEL.pt")
    if from_ is not None and from_ != "sim":
        raise Crew2Error(f"--from {from_}: only 'sim' is a ground-truth source")
    if frames not in ("all", "selected"):
        raise Crew2Error(f"--frames must be all or selected, not {frames}")
    paths = session_paths(sessions)
    if from_ == "sim":
        from crew2.detection.simtruth import annotate_from_sim

        for p in paths:
            out.print(f"{p.name}: {annotate_from_sim(p)} frames with simulator ground truth")
        return
    from crew2.detection.teacher import load_teacher, prelabel

    spec = load_spec(dataset or shipped("datasets/sim.yaml"))
    model = load_teacher(teacher, trust_pickle)
    with frames_progress("pre-labelling with the teacher", paths) as advance:
        done = prelabel(model, paths, spec, conf, frames, on_frames=advance)
    for name, n in done.items():
        out.print(f"{name}: {n} frames pre-labelled (marked 'teacher' until reviewed)")


@annotate_app.command("review")
@user_errors
def annotate_review(
    session: Annotated[Path, typer.Argument(help="The session to review.")],
    dataset: Dataset = None,
    frames: Annotated[str, typer.Option(help="selected (default, or all if none), annotated, or all.")] = "selected",
    scale: Annotated[int, typer.Option(help="Pixels per frame pixel.")] = 3,
) -> None:
    """Check and fix boxes in a window: n/p next/previous, u next unreviewed, drag to draw, click to select,
    d delete, 0-9 class, a accept frame, A accept all, z undo, s save, q save and quit, Esc quit."""
    from crew2.detection.classes import load_spec
    from crew2.detection.review import review

    if frames not in ("selected", "annotated", "all"):
        raise Crew2Error(f"--frames must be selected, annotated or all, not {frames}")
    saved = review(session, load_spec(dataset).names, scale, frames)
    out.print(f"saved {saved} frame(s) to {session}")


@annotate_app.command("export")
@user_errors
def annotate_export(
    yolo: Annotated[Path, typer.Option(help="The YOLO dataset folder to write.")],
    sessions: Annotated[list[Path] | None, typer.Argument(help="Session files or folders (or --split).")] = None,
    split_file: Annotated[Path | None, typer.Option(
        "--split", help="A split YAML from `crew2 data split`: its train and val sessions, as crew2 train uses "
                        "them.")] = None,
    val: Annotated[float, typer.Option(help="Without --split: share of sessions for validation.")] = 0.2,
    dataset: Dataset = None,
    seed: Annotated[int, typer.Option(help="Same seed, same split.")] = 0,
) -> None:
    """Annotated frames to images/ labels/ data.yaml: `yolo detect train data=DIR/data.yaml` works on it."""
    from crew2.data.tools import read_split, session_paths, split
    from crew2.detection.classes import load_spec
    from crew2.detection.yolo_io import export_yolo

    if split_file is not None:
        parts = read_split(split_file)
    elif not sessions:
        raise Crew2Error("give session files or folders, or --split FILE")
    else:
        paths = session_paths(sessions)
        parts = split(paths, (1 - val, val, 0.0), seed) if len(paths) > 1 and val > 0 else {"train": paths, "val": []}
    counts = export_yolo({"train": parts["train"], "val": parts["val"]}, yolo, load_spec(dataset).names)
    out.print(f"wrote {yolo}: " + ", ".join(f"{k} {v} images" for k, v in counts.items()))


@annotate_app.command("import")
@user_errors
def annotate_import(
    labels: Annotated[Path, typer.Argument(help="A folder of YOLO label files (or one file).")],
    sessions: Sessions,
    dataset: Dataset = None,
) -> None:
    """Read YOLO labels (from CVAT, Label Studio, Roboflow or crew2's export) back into the sessions."""
    from crew2.data.tools import session_paths
    from crew2.detection.classes import load_spec
    from crew2.detection.yolo_io import import_yolo

    if not labels.exists():
        raise Crew2Error(f"{labels}: no such file or folder")
    done = import_yolo(labels, session_paths(sessions), load_spec(dataset).names)
    for name, n in done.items():
        out.print(f"{name}: {n} frames imported (reviewed)")


@app.command()
@user_errors
def train(
    sessions: Annotated[list[Path] | None, typer.Argument(help="Session files or folders (split by session).")] = None,
    split: Annotated[Path | None, typer.Option(help="A split YAML from `crew2 data split` instead.")] = None,
    val_fraction: Annotated[float, typer.Option(help="Without --split: share of sessions held out.")] = 0.2,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run folder (checkpoints, metrics, plots).")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Passes over the training data [default: 10, more for small data: 3,000 steps at least]")] = None,
    batch: Annotated[int, typer.Option(help="Samples per step (per process under torchrun).")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-3,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="Data loading processes.")] = 2,
    scale: Annotated[str, typer.Option(help="Backbone size: t (CPU real time), n, s, m, l, x.")] = "t",
    frames: Annotated[int, typer.Option(help="Frames stacked per sample (1 = the current one).")] = 1,
    key_pool: Annotated[str, typer.Option(help="Key head reads: where (means + where things are) or mean.")] = "where",
    balance: Annotated[float, typer.Option(help="0 = keys as recorded .. 1 = all combinations equally.")] = 0.5,
    label_offset: Annotated[int | None, typer.Option(
        help="Learn the keys pressed this many frames later [default: crew2 drive's latency, 50 ms, in frames for "
             "sessions of a window or the screen (1 at 20 fps); 0 for the simulator]")] = None,
    trim_idle: Annotated[float, typer.Option(
        help="Leave out stretches this long (s) with no key pressed: waits, not driving (0 keeps them).")] = 1.0,
    pretrained: Annotated[str, typer.Option(
        help="Start from: a crew2 or Ultralytics .pt; auto: the shipped driver's weights; none: scratch.")] = "auto",
    trust_pickle: Annotated[bool, typer.Option(help=f"--pretrained: {TRUST_HELP}")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    uncertainty: Annotated[bool, typer.Option(help="Learn the task weights (Kendall et al. 2018).")] = False,
    amp: Annotated[bool, typer.Option(help="Mixed precision: bf16 on CPUs that have it, fp16 on CUDA.")] = True,
    ema: Annotated[float, typer.Option(help="EMA decay of the weights (0 = off).")] = 0.999,
    seed: Annotated[int, typer.Option(help="Data order, augmentation and initialisation.")] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (smoke runs).")] = None,
) -> None:
    """Train the multi-task network (key head + obstacle head) on session files.

    Under `torchrun --nproc-per-node N -m crew2 train ...` the same command trains with DDP."""
    import os

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from crew2.data.tools import read_split, session_paths
    from crew2.data.tools import split as split_sessions

    if split is not None:
        parts = read_split(split)
        train_paths, val_paths = parts["train"], parts["val"]
    else:
        if not sessions:
            raise Crew2Error("give session files or folders, or --split FILE")
        parts = split_sessions(session_paths(sessions), (1 - val_fraction, val_fraction, 0.0), seed)
        train_paths, val_paths = parts["train"], parts["val"]
    out_dir = out_dir or Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
    if resume and not (out_dir / "last.pt").is_file():
        raise Crew2Error(f"{out_dir / 'last.pt'}: no such checkpoint to resume (give the run's --out)")
    from crew2.drive.fusion import Rules
    from crew2.model import checkpoint  # torch: seconds to import, so after the checks above
    from crew2.train.metrics import judge
    from crew2.train.trainer import TrainConfig, starting_weights
    from crew2.train.trainer import train as run_training

    config = TrainConfig(train=train_paths, val=val_paths, out=out_dir, epochs=epochs, batch=batch, lr=lr,
                         device=device, workers=workers, scale=scale, frames=frames, key_pool=key_pool,
                         balance=balance, trim_idle=trim_idle, label_offset=label_offset, pretrained=pretrained,
                         trust_pickle=trust_pickle, resume=resume, uncertainty=uncertainty,
                         amp=amp, ema=ema, seed=seed, max_steps=max_steps)
    quiet = int(os.environ.get("RANK", "0")) != 0
    if not quiet and not resume:
        start = starting_weights(config)
        out.print(f"starting from {start}" if start else "starting from scratch", highlight=False)
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                        TimeRemainingColumn(), console=out, disable=quiet)
    task = progress.add_task("train", total=None, epoch=0, info="")
    logged = [time.monotonic()]

    def on_step(s) -> None:
        done = (s.step - 1) % s.steps_per_epoch + 1
        total = s.steps_per_epoch if max_steps is None else min(s.steps_per_epoch, max_steps - (s.step - done))
        info = (f"loss {s.losses['total']:.3f} (keys {s.losses['keys']:.3f}, det {s.losses['det']:.3f}) "
                f"{s.samples_per_s:.0f} samples/s")
        progress.update(task, completed=done, total=total, epoch=s.epoch, info=info)
        if not out.is_terminal and not quiet and (done % max(1, total // 10) == 0 or time.monotonic() > logged[0] + 60):
            out.print(f"epoch {s.epoch}: step {done}/{total}, {info}", highlight=False)  # logs: no bar, a line a
            logged[0] = time.monotonic()  # tenth of an epoch or a minute

    def on_validate(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total, info="validating")

    def on_epoch(e) -> None:
        v = e.val
        progress.console.print(
            f"epoch {e.epoch}: keys F1 {v['f1']:.3f} (constant {v['constant_f1']:.3f}), exact {v['exact_match']:.3f}, "
            f"mAP50 {v['map50']:.3f} (tall boxes {v['map50_tall']:.3f}), mAP50-95 {v['map50_95']:.3f}"
            f"{'  best' if e.best else ''}", highlight=False)
        if e.warning:
            progress.console.print(e.warning, style="bold red", markup=False, highlight=False)

    out.print(f"training on {len(train_paths)} session(s), validating on {len(val_paths)}; run folder {out_dir}")
    with progress:
        result = run_training(config, on_step=on_step, on_epoch=on_epoch, on_validate=on_validate)
    if result is not None:
        best = checkpoint.load(out_dir / "best.pt")  # what ships: its thresholds, not the last epoch's
        verdict = judge(best["metrics"], best["thresholds"], best["keys"])
        rare = {k: f" (down in {verdict.pressed[k]:.1%} of validation frames: too few to calibrate, pressed only "
                   "when sure)" for k in verdict.rare}
        thresholds = ", ".join(f"{k.upper()} {t:.2f}{rare.get(k, '')}"
                               for k, t in zip(best["keys"], best["thresholds"], strict=True))
        out.print(f"calibrated thresholds (epoch {best['epoch']}, best.pt): {thresholds}")
        print_detection(best["metrics"], best["class_names"], Rules.load().min_score, "best.pt's obstacle head")
        out.print(f"wrote {out_dir}: last.pt, best.pt, metrics.csv, losses.png, key_f1.png, confusion.png")
        if warning := verdict.warning():
            out.print(f"best.pt: {warning}", style="bold red", markup=False, highlight=False)


@app.command(name="eval")
@user_errors
def eval_(
    weights: Annotated[Path, typer.Argument(help="A checkpoint (.pt) or an ONNX export (.onnx).", callback=given)],
    sessions: Annotated[list[Path] | None, typer.Argument(help="Held-out session files or folders.")] = None,
    engine: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    mp4: Annotated[Path | None, typer.Option(help="Render the human's keys, the model's and its boxes here.")] = None,
    label_offset: Annotated[int, typer.Option(help="Compare with the keys pressed this many frames later.")] = 0,
    drive: Annotated[bool, typer.Option("--drive", help="Closed loop: drive the sim against the autopilot.")]
    = False,
    episodes: Annotated[int, typer.Option(help="--drive: episodes per driver.")] = 20,
    seeds: Annotated[str, typer.Option(help="--drive: FIRST seed, FIRST-LAST or a,b,c.")] = "1000",
    seconds: Annotated[float, typer.Option(help="--drive: length of each episode, s.")] = 120.0,
    track_km: TrackKm = 5.0,
    rules: Annotated[Path | None, typer.Option(
        help="Your own crash-prevention rules (YAML): --drive drives with them; shadow mode counts obstacles found "
             "at their min_score.")] = None,
    box_rules: BoxRules = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="--drive: also write every episode here.")]
    = None,
) -> None:
    """Shadow mode: replay sessions through a model; what it would have pressed against what you pressed.

    With --drive, closed loop instead: the model drives the simulator on held-out seeds, with and without
    crash prevention, next to the expert autopilot on the same seeds."""
    engine_for(weights, engine)  # before the imports, which take seconds
    from crew2.model.engine import load_engine

    model = load_engine(weights, engine, threads=1 if drive else None)  # one thread: see crew2 drive --threads
    if drive:
        return eval_drive(model, weights, seeds, episodes, seconds, track_km, rules, json_out, box_rules)
    if not sessions:
        raise Crew2Error("give held-out session files (shadow mode), or --drive for the closed loop")
    from crew2.data.tools import session_paths
    from crew2.drive.fusion import Rules
    from crew2.train.shadow import shadow

    paths = session_paths(sessions)
    with frames_progress("replaying sessions through the model", paths) as advance:
        result = shadow(model, paths, mp4, label_offset, advance, rules)
    m, keys = result.metrics, model.info.keys
    table = Table(title=f"{weights.name} on {result.frames} frames ({model.name} engine)",
                  caption="missed: frames you pressed the key and the model would not; extra: the other way round")
    for col in ("key", "threshold", "precision", "recall", "F1", "missed", "extra"):
        table.add_column(col, justify="right")
    for j, k in enumerate(keys):
        c = result.confusion[j]
        table.add_row(k.upper(), f"{model.info.thresholds[j]:.2f}", f"{m[k + '_precision']:.3f}",
                      f"{m[k + '_recall']:.3f}", f"{m[k + '_f1']:.3f}", str(c[1][0]), str(c[0][1]))
    out.print(table)
    out.print(f"mean F1 {m['f1']:.3f} (always pressing: {m['constant_f1']:.3f}), exact key set {m['exact_match']:.3f}, "
              f"mAP50 {m['map50']:.3f}, mAP50-95 {m['map50_95']:.3f}")
    print_detection(m, model.info.class_names, Rules.load(rules).min_score, "obstacles")
    if mp4 is not None:
        out.print(f"wrote {mp4}")


def eval_drive(model, weights: Path, seeds_text: str, episodes: int, seconds: float, track_km: float,
               rules: Path | None, json_out: Path | None, box_rules_setting: str = "auto") -> None:
    from rich.progress import Progress

    from crew2.drive.evaluate import DRIVERS, compare, parse_seeds, summary
    from crew2.drive.run import box_rules, sim_for

    if episodes < 1:
        raise Crew2Error(f"--episodes must be 1 or more, not {episodes}")
    seeds = parse_seeds(seeds_text, episodes)
    _, crash_prevention = box_rules(box_rules_setting, model.info)  # "model + fusion" drives as this says
    sim = sim_for(model.info, track_km=track_km, max_seconds=seconds)
    with Progress(console=out, transient=True) as progress:
        task = progress.add_task("driving the simulator", total=len(DRIVERS) * len(seeds))
        def on_episode(name: str, result: dict) -> None:
            progress.update(task, advance=1, description=name)
            if not out.is_terminal:  # a log: a line per episode
                out.print(f"{name}, seed {result['seed']}: {result['distance_m']:g} m, "
                          f"{result['collisions']} collision(s)", highlight=False)

        results = compare(model, weights, seeds, sim, rules, on_episode=on_episode, box_rules=box_rules_setting)
    means = summary(results)
    table = Table(title=f"closed loop: {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), {seconds:g} s each, "
                        f"{model.name} engine")
    columns = {"distance_m": "distance m", "distance_vs_autopilot": "÷ autopilot", "avg_speed_kmh": "km/h",
               "collisions_per_km": "crashes/km", "offroad_s": "off-road s", "score": "score"}
    table.add_column("driver")
    for header in columns.values():
        table.add_column(header, justify="right")
    for name, m in means.items():
        table.add_row(name, *(f"{m[c]:g}" for c in columns))
    out.print(table)
    out.print(f"model + fusion: {crash_prevention}", highlight=False, soft_wrap=True)
    write_json(json_out, {"weights": str(weights), "seeds": seeds, "seconds": seconds, "track_km": track_km,
                          "crash_prevention": crash_prevention, "summary": means, "episodes": results})


@app.command()
@user_errors
def export(
    weights: Annotated[Path, typer.Argument(help="The checkpoint (.pt) to export.")],
    out_path: Annotated[Path | None, typer.Option("--out", help="The ONNX file (default: next to it).")] = None,
    slim: Annotated[Path | None, typer.Option(help="Also write an inference-only copy of the checkpoint here.")]
    = None,
    threshold: Annotated[list[str] | None, typer.Option(
        help="KEY=P: press KEY from probability P on, in place of the calibrated threshold (repeatable; into "
             "the ONNX file and the --slim copy).")] = None,
) -> None:
    """Export a checkpoint to ONNX (both heads, decoded boxes) and check it against PyTorch."""
    engine_for(weights, "torch")  # before the imports, which take seconds
    out_path = out_path or (slim or weights).with_suffix(".onnx")
    check_output(out_path, "onnx")
    check_output(slim, "checkpoint")
    thresholds = key_values(threshold or [], "--threshold")
    from crew2.model import checkpoint
    from crew2.model.engine import disagreement, export_onnx

    if slim is not None:
        checkpoint.slim(weights, slim, thresholds)
        out.print(f"wrote {slim} ({slim.stat().st_size / 1e6:.1f} MB, weights and model card only)")
        weights = slim
    with whole(out_path) as part:
        export_onnx(weights, part, thresholds=thresholds)
    diff = disagreement(weights, out_path)
    out.print(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB); key probabilities agree with PyTorch "
              f"to {diff:.1e}")


@app.command()
@user_errors
def drive(
    weights: Annotated[Path, typer.Argument(help="The model: a checkpoint (.pt) or its ONNX export (.onnx).",
                                            callback=given)],
    source: Annotated[str, typer.Option(help="window (a game window), screen or sim (built-in).")] = "window",
    window: WindowTitle = None,
    capture: Capture = "auto",
    region: Annotated[str | None, typer.Option(help="--source screen: LEFT,TOP,WIDTH,HEIGHT.")] = None,
    engine: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    fps: Annotated[float | None, typer.Option(
        help="Control rate, frames per second [default: 40 for a single-frame model on a window or the screen, "
             "else 20]")] = None,
    fusion: Annotated[bool, typer.Option(help="Crash prevention on (--no-fusion to compare without).")] = True,
    rules: Annotated[Path | None, typer.Option(help="Your own crash-prevention rules (YAML).")] = None,
    box_rules: BoxRules = "auto",
    dry_run: Annotated[bool, typer.Option(help="Everything but sending keys.")] = False,
    countdown: Annotated[float, typer.Option(help="Seconds to switch to the game before the first key.")] = 3.0,
    seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    log: Annotated[Path | None, typer.Option(help="Write one JSON record per frame here.")] = None,
    show: Annotated[bool, typer.Option(help="A debug window: boxes, corridor and keys on the frame.")] = False,
    record: Annotated[Path | None, typer.Option(help="Also store the session here (.h5), marked as the model's.")]
    = None,
    mp4: Annotated[Path | None, typer.Option(help="Write what --show shows to this video.")] = None,
    expert_labels: Annotated[bool, typer.Option(
        help="--source sim --record: store the keys the autopilot would press in each frame the model drove "
             "into, not the keys sent (DAgger: train on them to recover where the model goes wrong).")] = False,
    takeover: Annotated[bool, typer.Option(
        help="Any of the model's keys that you press (and crew2 is not holding) gives you the wheel: crew2 "
             "releases its keys and sends nothing until --handback s after your last key.")] = True,
    handback: Annotated[float, typer.Option(help="Seconds after your last key before crew2 drives again.")] = 0.5,
    corrections: Annotated[Path | None, typer.Option(
        help="Store your takeovers here (.h5, driver 'correction'): train on them with the original sessions, "
             "--pretrained this model.")] = None,
    margin: Annotated[float, typer.Option(
        help="--corrections: seconds of frames before each takeover stored with it, with your first keys.")] = 0.3,
    threads: Annotated[int, typer.Option(help="Inference threads (1 leaves the other cores to the game).")] = 1,
    seed: Seed = 0,
) -> None:
    """Drive a game: capture, run the network, apply crash prevention, send keys, show live telemetry.

    Hotkeys: F9 pause/resume (every key released while paused), F10 stop; Ctrl+C stops too. In the --show
    window, Space pauses and Esc stops. Every key crew2 pressed is released when it stops (Ctrl+C, SIGTERM,
    an error, a stalled loop), and no key is sent while the game window is not in front.

    Take over whenever the model goes wrong: press the game's keys and you drive (the telemetry says so);
    let go and the model drives again. With --corrections those moments become training data (HG-DAgger)."""
    engine_for(weights, engine)  # before the imports, which take seconds
    from crew2.drive.run import DriveConfig
    from crew2.model.engine import load_engine
    from crew2.record.run import parse_region

    config = DriveConfig(weights=weights, source=source, window=window, capture=capture,
                         region=parse_region(region) if region else None, engine=engine, fps=fps, fusion=fusion,
                         rules=rules, box_rules=box_rules, dry_run=dry_run, countdown=countdown, seconds=seconds,
                         log=log, seed=seed, show=show, record=record, mp4=mp4, expert_labels=expert_labels,
                         takeover=takeover, handback=handback, corrections=corrections, margin=margin)
    model = load_engine(weights, engine, threads=threads)  # loaded once: fails early on a bad model file
    if fusion:
        out.print(crash_prevention_line(config, model.info), highlight=False, soft_wrap=True)
    result = drive_live(config, model)
    s = result.stats
    out.print(f"drove {s.steps} frames in {s.elapsed:.1f} s ({s.steps / max(s.elapsed, 1e-9):.1f} fps), {s.late} late, "
              f"{s.bad_frames} bad frames, {s.blind_frames} black or frozen, {s.watchdog_releases} watchdog releases; "
              "all keys released", soft_wrap=True)
    if config.takeover and config.source != "sim":
        out.print(f"you took over {s.takeovers} time(s) and drove {s.person_steps} frames "
                  f"({s.person_steps / max(s.steps, 1):.0%})", highlight=False)
    if result.sim is not None:
        print_episodes([{"seed": seed, **result.sim}], f"{weights.name} on the simulator, seed {seed}")
    for path in (record, mp4, corrections):
        if path is not None:
            out.print(f"wrote {path}")


def crash_prevention_line(config, info) -> str:
    """What crash prevention acts on, in a line (`crew2.drive.run.box_rules`)."""
    from crew2.drive.run import box_rules

    return box_rules(config.box_rules, info)[1]


def drive_live(config, model, title: str = "", control=None):
    """crew2's drive loop under a rich Live telemetry panel refreshed at most 10 times a second."""
    from rich.console import Group
    from rich.live import Live

    from crew2.drive.run import control_rate
    from crew2.drive.run import drive as run_drive
    from crew2.drive.telemetry import Aggregator, render

    telemetry = Aggregator(model.info.keys, model.info.thresholds, control_rate(config, model.info.frames),
                           crash_prevention_line(config, model.info) if config.fusion else "")
    live = Live(console=out, refresh_per_second=10, transient=True)
    shown = [0.0]

    def show() -> None:
        if time.monotonic() - shown[0] > 0.1 and (snap := telemetry.snapshot()) is not None:
            live.update(Group(title, render(snap)) if title else render(snap))
            shown[0] = time.monotonic()

    def on_frame(entry) -> None:
        telemetry.add(entry)
        show()

    def on_skip(why: str) -> None:
        telemetry.skip(why)
        show()

    with live:
        return run_drive(config, on_frame=on_frame, on_skip=on_skip, engine=model, control=control,
                         on_countdown=lambda left: live.update(f"driving starts in {left:.0f} s: switch to the game"))


@data_app.command("info")
@user_errors
def data_info(sessions: Sessions) -> None:
    """Sessions, frames, duration, source and size per frame; frames with no key pressed, idle stretches."""
    from crew2.data.tools import info, session_paths

    table = Table(title="sessions")
    for col in ("session", "frames", "time", "fps", "source", "keys", "KB/frame", "annotated"):
        table.add_column(col, justify="left" if col in ("session", "source", "keys") else "right", overflow="fold")
    rows = [info(p) for p in session_paths(sessions)]
    for r in rows:
        table.add_row(r.path.name, str(r.frames), f"{r.seconds:.0f} s", f"{r.fps:g}", f"{r.source}/{r.driver}",
                      "".join(k.upper() if len(k) == 1 else f" {k} " for k in r.keys).strip(),
                      f"{r.kb_per_frame:.1f}", str(r.annotated))
    out.print(table)
    frames = sum(r.frames for r in rows)
    out.print(f"{len(rows)} session(s), {frames} frames, {sum(r.seconds for r in rows) / 60:.1f} min")
    print_idle(rows)


def print_idle(rows) -> None:
    """Per session and overall: frames with no key pressed, and the idle stretches (crew2.data.idle)."""
    from crew2.data.tools import IdleSummary

    total = IdleSummary.total([r.idle for r in rows])
    table = Table(title=f"frames with no key pressed; idle stretches: {total.min_seconds:g} s or more of them")
    for col in ("session", "no key", "stretches", "idle time", "idle share", "longest"):
        table.add_column(col, justify="left" if col == "session" else "right")
    for name, i in [*((r.path.name, r.idle) for r in rows), *([("all", total)] if len(rows) > 1 else [])]:
        table.add_row(name, f"{i.no_keys_share:.1%}", str(i.stretches), f"{i.idle_seconds:.1f} s",
                      f"{i.idle_share:.1%}", f"{i.longest_seconds:.1f} s")
    out.print(table)
    out.print(f"no key pressed in {total.no_keys_share:.1%} of frames; {total.stretches} idle stretch(es) of "
              f"{total.min_seconds:g} s or more: {total.idle_seconds:.1f} s, {total.idle_share:.1%} of frames"
              + (f"; longest {total.longest_seconds:.1f} s ({total.longest_at})" if total.stretches else ""),
              highlight=False)


@data_app.command("stats")
@user_errors
def data_stats(
    sessions: Sessions,
    png: Annotated[Path | None, typer.Option(help="Also draw the key combinations as a bar chart here.")] = None,
) -> None:
    """Key-combination distribution (table and optional PNG), annotation counts per class, idle stretches."""
    from collections import Counter

    from crew2.data.tools import info, key_combinations, plot_combinations, session_paths

    paths = session_paths(sessions)
    counts = key_combinations(paths)
    total = sum(counts.values())
    table = Table(title=f"key combinations over {total} frames")
    table.add_column("keys")
    table.add_column("frames", justify="right")
    table.add_column("share", justify="right")
    for combo, n in counts.most_common():
        table.add_row(combo, str(n), f"{100 * n / total:.1f}%")
    out.print(table)
    rows = [info(p) for p in paths]
    per_class = sum((r.boxes_per_class for r in rows), Counter())
    out.print(f"annotated frames: {sum(r.annotated for r in rows)} of {total} "
              f"({sum(r.reviewed for r in rows)} reviewed); boxes per class: "
              + (", ".join(f"{k} {v}" for k, v in per_class.most_common()) or "none"))
    print_idle(rows)
    if png is not None:
        plot_combinations(counts, png)
        out.print(f"wrote {png}")


@data_app.command("validate")
@user_errors
def data_validate(sessions: Sessions) -> None:
    """Open every session and decode every frame; list what is wrong. Exit 1 if anything is."""
    from crew2.data.tools import session_paths, validate

    bad = 0
    paths = session_paths(sessions)
    with frames_progress("checking", paths) as advance:
        checked = [(p, validate(p, advance)) for p in paths]
    for p, problems in checked:
        bad += bool(problems)
        out.print(f"[green]ok[/green]   {p}" if not problems else f"[red]bad[/red]  {p}: " + "; ".join(problems),
                  highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)


@data_app.command("split")
@user_errors
def data_split(
    sessions: Sessions,
    out_path: Annotated[Path, typer.Option("--out", help="Dataset descriptor to write (YAML).")],
    val: Annotated[float, typer.Option(help="Share of frames for validation.")] = 0.15,
    test: Annotated[float, typer.Option(help="Share of frames for testing.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Same seed, same split.")] = 0,
) -> None:
    """Split sessions into train/val/test by session (never by frame), reproducibly; write a YAML list (paths
    relative to it) that `crew2 train --split` and `crew2 annotate export --split` read."""
    from crew2.data.tools import session_paths, share_warning, shares, split, write_split

    check_output(out_path, "split")
    fractions = (1 - val - test, val, test)
    parts = split(session_paths(sessions), fractions, seed)
    write_split(parts, out_path)
    got = shares(parts)
    for name, ps in parts.items():
        out.print(f"{name:5s} {len(ps):3d} session(s), {got[name]:.0%} of the frames")
    if warning := share_warning(got, fractions):
        out.print(f"[yellow]{warning}[/]", highlight=False)
    out.print(f"wrote {out_path}")


@data_app.command("merge")
@user_errors
def data_merge(sessions: Sessions,
               out_path: Annotated[Path, typer.Option("--out", help="The merged session file.")]) -> None:
    """Concatenate sessions with the same keys and resolution into one file (frames are not re-encoded)."""
    from crew2.data.tools import merge, session_paths

    n = merge(session_paths(sessions), out_path)
    out.print(f"wrote {out_path}: {n} frames")


@data_app.command("view")
@user_errors
def data_view(
    session: Annotated[Path, typer.Argument(help="The session file to play.")],
    mp4: Annotated[Path | None, typer.Option(help="Write a video instead of opening a window.")] = None,
    scale: Annotated[int, typer.Option(help="Pixels per frame pixel.")] = 3,
) -> None:
    """Play a session with its keys (and boxes) drawn over it; Space pauses, Q quits. Or --mp4 out.mp4."""
    from crew2.data.tools import play, write_mp4

    if scale < 1:
        raise Crew2Error(f"--scale must be 1 or more, not {scale}")
    if not session.is_file():
        raise Crew2Error(f"{session}: no such file")
    if mp4 is not None:
        with frames_progress(f"writing {mp4}", [session]) as advance:
            n = write_mp4(session, mp4, scale, advance)
        out.print(f"wrote {mp4}: {n} frames")
    else:
        play(session, scale)


def version_callback(value: bool) -> None:
    if value:
        out.print(f"crew2 {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                              help="Print the version and exit.")] = False) -> None:
    """Teach a neural network to play a driving game from its screen."""
    import logging

    from rich.logging import RichHandler

    log = logging.getLogger("crew2")  # the library logs; the CLI shows its notes on stderr
    if not log.handlers:
        log.addHandler(RichHandler(console=err, show_time=False, show_path=False))
        log.setLevel(logging.INFO)


if __name__ == "__main__":
    sys.exit(app())
