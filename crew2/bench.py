"""Benchmarks (`crew2 bench ...`): measured figures for the README, never asserted by tests."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from crew2.errors import Crew2Error
from crew2.sim.autopilot import Autopilot
from crew2.sim.episodes import mean_summary, run_autopilot
from crew2.sim.render import Appearance, Renderer
from crew2.sim.world import SimConfig, World


def machine() -> dict[str, str | int]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        cpu = models[0] if models else cpu
    return {"cpu": cpu, "cores": os.cpu_count() or 0,
            "python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}


@contextmanager
def one_core() -> Iterator[bool]:
    """Run the block on a single core, OpenCV single-threaded, as the targets are stated; restores both.
    Yields whether pinning was possible (not on every OS)."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    try:
        if cores is not None:
            os.sched_setaffinity(0, {min(cores)})
        yield cores is not None
    finally:
        cv2.setNumThreads(threads)
        if cores is not None:
            os.sched_setaffinity(0, cores)


def bench_sim(config: SimConfig, seconds: float = 3.0, seeds: int = 5) -> dict[str, float]:
    """Headless frames/s of the whole loop (autopilot + world step + render) and each stage's cost,
    over `seconds` of wall time on episodes of seed 0, 1, ...; then the autopilot's driving on `seeds`."""
    spent = {"autopilot": 0.0, "step": 0.0, "render": 0.0}
    frames, seed, clock = 0, 0, time.perf_counter
    start = clock()
    while clock() - start < seconds:
        world, pilot = World(config, seed), Autopilot()
        renderer = Renderer(config.width, config.height, Appearance(), config.lanes, seed)
        while not (world.finished or world.timed_out) and clock() - start < seconds:
            t0 = clock()
            keys = pilot.act(world)
            t1 = clock()
            world.step(*keys)
            t2 = clock()
            renderer.render(world)
            t3 = clock()
            spent["autopilot"] += t1 - t0
            spent["step"] += t2 - t1
            spent["render"] += t3 - t2
            frames += 1
        seed += 1
    total = sum(spent.values())
    out = {"frames": frames, "size": f"{config.width}x{config.height}",
           "step_render_fps": round(frames / (spent["step"] + spent["render"]), 1),
           "loop_fps": round(frames / total, 1)}
    out.update({f"{k}_us": round(1e6 * v / max(frames, 1), 1) for k, v in spent.items()})
    driving = mean_summary(run_autopilot(config, range(seeds)))
    return {**out, **{f"autopilot_{k}": v for k, v in driving.items()}}


def natural_like(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Frames with natural-image statistics (1/f amplitude spectrum, colour, edges): a stand-in for real
    game frames, which hold far more texture than the simulator's flat colours."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(width, height))  # (H, W)
    frames = []
    for _ in range(n):
        channels = []
        for _ in range(3):
            phase = np.exp(2j * np.pi * rng.random((height, width)))
            channels.append(np.real(np.fft.ifft2(amplitude * phase)))
        img = np.stack(channels, axis=2)
        img = (img - img.mean()) / (img.std() + 1e-9) * 45 + rng.uniform(90, 160, 3)
        for _ in range(int(rng.integers(3, 8))):  # a few hard-edged objects
            x, y = int(rng.integers(width)), int(rng.integers(height))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, width // 3)), y + int(rng.integers(5, height // 3))),
                          rng.uniform(0, 255, 3).tolist(), -1)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def bench_storage(frames: dict[str, list[np.ndarray]], quality: int = 90) -> dict[str, float]:
    """Bytes per frame and decodes/s (one core) of JPEG at `quality`, per named frame set."""
    from crew2.data.session import decode, encode

    out: dict[str, float] = {}
    for name, images in frames.items():
        blobs = [encode(f, quality) for f in images]
        t = time.perf_counter()
        decoded = [decode(b) for b in blobs]
        out[f"{name}_kb_per_frame"] = round(float(np.mean([len(b) for b in blobs])) / 1000, 2)
        out[f"{name}_decode_per_s"] = round(len(blobs) / (time.perf_counter() - t))
        psnr = [cv2.PSNR(a, b) for a, b in zip(images, decoded, strict=True)]
        out[f"{name}_psnr_db"] = round(float(np.mean(psnr)), 1)
        out[f"{name}_raw_kb_per_frame"] = round(images[0].nbytes / 1000, 1)
    return out


def bench_loader(paths: list[Path], workers: int = 2, batch: int = 64, batches: int = 60) -> dict[str, float]:
    """Augmented, balanced samples/s delivered by the training loader with `workers` processes."""
    from crew2.data.loader import LoaderConfig, loader

    dl = loader(paths, LoaderConfig(balance=0.5, buffer=1024), batch_size=batch, workers=workers)
    it = iter(dl)
    next(it)  # workers started, first chunks read
    t, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            n += len(next(it)["keys"])
        except StopIteration:
            break
    return {"loader_workers": workers, "loader_batch": batch,
            "loader_samples_per_s": round(n / (time.perf_counter() - t))}


@contextmanager
def x_display() -> Iterator[str]:
    """$DISPLAY if set, else a private Xvfb (1280x720) for the length of the block."""
    import shutil
    import subprocess

    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    exe = shutil.which("Xvfb")
    if exe is None:
        raise Crew2Error("the recording benchmark needs an X display or Xvfb (apt-get install xvfb)")
    n = next(i for i in range(150, 250) if not Path(f"/tmp/.X11-unix/X{i}").exists())
    proc = subprocess.Popen([exe, f":{n}", "-screen", "0", "1280x720x24", "-nolisten", "tcp", "-noreset"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            time.sleep(0.05)
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def sim_window(*options: str) -> Iterator[str]:
    """The simulator's window in its own process (as a game would be) on $DISPLAY or a private Xvfb, in
    front; yields the display's name and kills the game after the block."""
    import subprocess
    import sys

    from crew2 import x11
    from crew2.sim.window import WINDOW_TITLE

    with x_display() as display:
        env = {**os.environ, "DISPLAY": display, "SDL_AUDIODRIVER": "dummy"}
        game = subprocess.Popen([sys.executable, "-m", "crew2", "sim", *options], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            dpy = x11.open_display(display)
            for _ in range(300):
                try:
                    x11.focus(dpy, x11.find_window(dpy, WINDOW_TITLE))
                    break
                except Crew2Error:
                    time.sleep(0.1)
            dpy.close()
            yield display
        finally:
            game.kill()
            game.wait()


def bench_record(out: Path, seconds: float = 20.0, fps: float = 30.0) -> dict[str, float]:
    """Record the simulator's window (the autopilot playing it at 60 fps in another process, as a game would
    be) through the real path: mss capture thread, X11 key state, JPEG writer thread."""
    from crew2.data.session import Session
    from crew2.record.run import RecordConfig, record
    from crew2.sim.window import WINDOW_TITLE

    with sim_window("--autopilot", "--fps", "60", "--seconds", str(seconds + 30)) as display:
        stats = record(RecordConfig(source="window", window=WINDOW_TITLE, out=out, fps=fps, seconds=seconds,
                                    countdown=0, display=display))
    ticks = stats.frames + stats.dropped
    return {"record_target_fps": fps, "record_fps": round(stats.fps, 2), "record_frames": stats.frames,
            "record_dropped_pct": round(100 * stats.dropped / max(ticks, 1), 2),
            "record_late_pct": round(100 * stats.late / max(ticks, 1), 2),
            "record_kb_per_frame": round(out.stat().st_size / 1000 / max(len(Session(out)), 1), 2)}


def bench_data(workdir: Path, record_seconds: float = 20.0) -> dict[str, float]:
    """Storage per frame, recording cadence at 30 fps and loader throughput, in one run."""
    from crew2.data.session import Session
    from crew2.keys import default_profile
    from crew2.record.run import RecordConfig, record

    paths = []
    for seed in range(3):  # three sim sessions of 1,500 frames: the storage and loader figures use them
        path = workdir / f"sim{seed}.h5"
        record(RecordConfig(source="sim", out=path, frames=1500, seed=seed, noise=0.3, profile=default_profile(),
                            sim=SimConfig(randomize=True)))
        paths.append(path)
    sim_frames = []  # fresh renders: frames read back from a session would already be JPEG's
    for seed in range(3):
        world = World(SimConfig(), seed)
        renderer = Renderer(256, 144, Appearance.sample(np.random.default_rng(seed)), 3, seed)
        pilot = Autopilot()
        for step in range(500):
            world.step(*pilot.act(world))
            if step % 10 == 0:
                sim_frames.append(renderer.render(world).image)
    out: dict[str, float] = {"sim_session_kb_per_frame": round(
        sum(p.stat().st_size for p in paths) / 1000 / sum(len(Session(p)) for p in paths), 2)}
    out.update(bench_storage({"sim": sim_frames, "natural": natural_like(100, 256, 144)}))
    out.update(bench_loader(paths))
    out.update(bench_record(workdir / "window.h5", seconds=record_seconds))
    return out


def _latency(fn, runs: int, warmup: int = 10) -> tuple[float, float]:
    """p50 and p99 of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(float(np.percentile(times, 50)) * 1000, 2), round(float(np.percentile(times, 99)) * 1000, 2)


def bench_model(workdir: Path, weights: Path | None = None, runs: int = 300, threads: int = 2) -> dict[str, float]:
    """Batch-1 latency of the default model (or `weights`) through each engine, both heads and NMS included,
    next to the seed project's model (a key-only DenseNet121 at 224x224, PyTorch eager) in the same run;
    and CPU training throughput of the default model."""
    import torch
    import torchvision

    from crew2.model.engine import export_onnx, load_engine

    torch.set_num_threads(threads)
    weights = weights or default_weights(workdir)
    onnx_path = export_onnx(weights, workdir / "model.onnx")
    engines = {"torch": load_engine(weights, "torch"), "onnx": load_engine(onnx_path, "onnx", threads=threads),
               "onnx_1thread": load_engine(onnx_path, "onnx", threads=1)}
    info = engines["torch"].info
    frame = _sim_frame(*info.size)[None].repeat(info.frames, axis=3)  # (1, H, W, 3 * frames)
    out: dict[str, float] = {"model_size": f"{info.size[0]}x{info.size[1]}", "threads": threads}
    for name, engine in engines.items():
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = _latency(lambda e=engine: e(frame), runs)
    out["onnx_file_mb"] = round(onnx_path.stat().st_size / 1e6, 2)

    seed = torchvision.models.densenet121(weights=None, num_classes=9).eval()  # the seed's 9-way softmax model
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        out["densenet121_224_p50_ms"], out["densenet121_224_p99_ms"] = _latency(lambda: seed(x), max(runs // 10, 20))
    fastest = min(out["torch_p50_ms"], out["onnx_p50_ms"], out["onnx_1thread_p50_ms"])
    out["speedup_vs_densenet121"] = round(out["densenet121_224_p50_ms"] / fastest, 1)
    out["train_samples_per_s_cpu"], out["train_precision_cpu"] = _train_throughput(info.size)
    return out


def default_weights(workdir: Path) -> Path:
    """The shipped default checkpoint, or else an untrained default model (the same graph and cost)."""
    from crew2.keys import default_profile
    from crew2.model import checkpoint
    from crew2.model.engine import DEFAULT_WEIGHTS
    from crew2.model.net import MultiTaskNet
    from crew2.sim.world import CLASSES

    if DEFAULT_WEIGHTS.is_file():
        return DEFAULT_WEIGHTS
    net = MultiTaskNet(num_keys=4, num_classes=len(CLASSES))
    path = workdir / "default.pt"
    checkpoint.save(path, net_cfg=checkpoint.net_config(net, "t", 128), profile=default_profile(),
                    class_names=list(CLASSES), thresholds=[0.5] * 4, model=net.state_dict(), size=(256, 144))
    return path


class DenseNetKeys:
    """The seed project's kind of model as an engine: a DenseNet121 on 224x224 frames, keys only (no
    obstacle head), PyTorch eager. Untrained: it is here to be timed in the same loop, not to drive."""

    name = "densenet121"

    def __init__(self, info):
        import dataclasses

        import torch
        import torchvision

        self.info = dataclasses.replace(info, class_names=[], size=(224, 224), frames=1)
        self.net = torchvision.models.densenet121(weights=None, num_classes=len(info.keys)).eval()
        self.torch = torch

    def __call__(self, frames: np.ndarray) -> list:
        from crew2.model.engine import Prediction, preprocess

        with self.torch.no_grad():
            probs = self.torch.sigmoid(self.net(self.torch.from_numpy(preprocess(frames)))).numpy()
        return [Prediction(p, np.zeros((0, 6), np.float32)) for p in probs]


def bench_loop(workdir: Path, weights: Path | None = None, seconds: float = 10.0, fps: float = 30.0,
               window: tuple[int, int] = (640, 360), threads: int = 2) -> dict[str, float]:
    """End-to-end latency of `crew2 drive` on a real window: the simulator runs in another process (as a
    game would) in a `window`-sized window; crew2 captures it with mss, runs the model, decodes, applies
    crash prevention and sends the keys through XTest. Per frame, from the start of the screen grab that
    produced it to the keys sent: p50/p99 per stage and in all. The default model through ONNX Runtime,
    then the seed-style DenseNet121 (keys only, PyTorch eager) in the same run on the same window."""
    import torch

    from crew2.drive.loop import STAGES
    from crew2.drive.run import DriveConfig, drive
    from crew2.model.engine import export_onnx, load_engine
    from crew2.sim.window import WINDOW_TITLE

    torch.set_num_threads(threads)  # for the DenseNet121; crew2 drives with one inference thread, as by default
    weights = weights or default_weights(workdir)
    onnx_path = weights if weights.suffix == ".onnx" else export_onnx(weights, workdir / "loop.onnx")
    crew2 = load_engine(onnx_path, "onnx", threads=1)
    engines = {"crew2": crew2, "densenet121": DenseNetKeys(crew2.info)}
    out: dict[str, float] = {"loop_window": f"{window[0]}x{window[1]}", "loop_target_fps": fps,
                             "crew2_threads": 1, "densenet121_threads": threads}
    with sim_window("--width", str(window[0]), "--height", str(window[1]),
                    "--seconds", str(len(engines) * (seconds + 30))) as display:
        for name, engine in engines.items():
            logs = []
            cfg = DriveConfig(weights=onnx_path, source="window", window=WINDOW_TITLE, display=display,
                              fps=fps, countdown=0, seconds=seconds, hotkeys=False)
            stats = drive(cfg, on_frame=logs.append, engine=engine).stats
            logs = logs[len(logs) // 10:]  # the first tenth warms up
            for stage in (*STAGES, "total"):
                ms = [sum(e.ms.values()) if stage == "total" else e.ms[stage] for e in logs]
                p50, p99 = np.percentile(ms, [50, 99])
                out[f"{name}_{stage}_p50_ms"] = round(float(p50), 2)
                if stage in ("capture", "infer", "total"):
                    out[f"{name}_{stage}_p99_ms"] = round(float(p99), 2)
            out[f"{name}_fps"] = round(stats.steps / max(stats.elapsed, 1e-9), 1)
    out["speedup_vs_densenet121"] = round(out["densenet121_total_p50_ms"] / out["crew2_total_p50_ms"], 1)
    return out


def _sim_frame(width: int, height: int) -> np.ndarray:
    world = World(SimConfig(width=width, height=height, traffic=2.0), 0)
    for _ in range(100):
        world.step(True, False, False, False)
    return Renderer(width, height, Appearance(), 3).render(world).image


def _train_throughput(size: tuple[int, int], batch: int = 32, steps: int = 6) -> tuple[float, str]:
    """Samples/s of forward + backward + AdamW on the default model, synthetic batches, and the precision:
    bf16 autocast where the CPU has it natively, else fp32, as `crew2 train` runs."""
    import torch

    from crew2.data.loader import ANNOTATED, BATCH_IDX, BBOXES, CLS, IMAGE, KEYS
    from crew2.model.loss import MultiTaskLoss, as_float
    from crew2.model.net import MultiTaskNet
    from crew2.train.trainer import mixed_precision

    amp, amp_dtype = mixed_precision(torch.device("cpu"))

    net = MultiTaskNet(num_keys=4, num_classes=4).train().to(memory_format=torch.channels_last)
    loss_fn = MultiTaskLoss(net, torch.ones(4))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    w, h = size
    x = torch.rand(batch, 3, h, w).contiguous(memory_format=torch.channels_last)
    target = {IMAGE: torch.zeros(batch, 3, h, w, dtype=torch.uint8),  # the loss reads the frame size from it
              KEYS: (torch.rand(batch, 4) > 0.5).float(), ANNOTATED: torch.ones(batch, dtype=torch.bool),
              BATCH_IDX: torch.arange(batch).float(), CLS: torch.zeros(batch, 1),
              BBOXES: torch.tensor([[0.5, 0.6, 0.2, 0.2]]).repeat(batch, 1)}

    def step() -> None:
        with torch.autocast("cpu", dtype=amp_dtype, enabled=amp):
            keys, det = net(x)
        loss, _ = loss_fn(keys.float(), as_float(det), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return round(batch * steps / (time.perf_counter() - t), 1), "bf16" if amp else "fp32"
