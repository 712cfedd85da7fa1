"""The command line: every verb has help, the built ones run, bad input is one clear line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crew2.cli import app

ROOT = Path(__file__).resolve().parents[1]
VERBS = ["record", "annotate", "train", "eval", "export", "drive", "demo", "sim", "bench", "data"]
runner = CliRunner()


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb):
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output) > 200


def test_help_paragraphs_are_rewrapped_not_broken_where_the_source_breaks():
    result = runner.invoke(app, ["drive", "--help"], env={"COLUMNS": "200"})
    # One paragraph of the docstring, broken in the source after "In the --show": one line at this width.
    assert "Ctrl+C stops too. In the --show window, Space pauses and Esc stops." in result.output


def test_headless_sim_prints_a_summary_and_writes_json(tmp_path):
    out = tmp_path / "eps.json"
    result = runner.invoke(app, ["sim", "--headless", "--episodes", "2", "--track-km", "0.5", "--width", "128",
                                 "--height", "72", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "collisions" in result.output and "mean" in result.output
    episodes = json.loads(out.read_text())
    assert [e["seed"] for e in episodes] == [0, 1]
    assert all(e["distance_m"] >= 500 for e in episodes)


@pytest.mark.parametrize("args, message", [
    (["sim", "--headless", "--lanes", "9"], "lanes must be 2, 3 or 4"),
    (["sim", "--headless", "--width", "0"], "too small"),
    (["sim", "--headless", "--traffic", "-1"], "traffic must be zero or more"),
    (["sim", "--scale", "0"], "--scale must be 1 or more"),
    (["demo", "--episodes", "0"], "--episodes must be 1 or more"),
    (["record", "--capture", "dxcam"], "unknown capture 'dxcam': use one of auto, wgc, mss"),
    (["record", "--source", "window", "--window", "The Crew 2", "--capture", "wgc"], "--capture wgc needs Windows"),
])
def test_bad_input_is_one_clear_line(args, message):
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["drive", "none.pt"], ["eval", "none.onnx", "--drive"], ["export", "none.pt"],
                                  ["annotate", "select", "s.h5", "--unsure", "none.pt"]])
def test_a_missing_model_file_is_answered_before_torch_is_imported(args, tmp_path):
    code = ("import sys, cli\ntry:\n    cli.app(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print(e.code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.split() == ["2", "False"]
    model = next(a for a in args if a.startswith("none."))
    assert result.stderr.strip() == f"error: {model}: no such model file"


def test_console_script_and_module_agree():
    exe = Path(sys.executable).with_name("crew2")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("crew2 ")


def test_bench_sim_reports_rates_and_driving(tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "sim", "--seconds", "0.5", "--seeds", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["sim"]["loop_fps"] > 0 and report["sim"]["frames"] > 0
    assert report["sim"]["autopilot_episodes"] == 1 and report["machine"]["cores"] >= 1


def test_training_throughput_benchmark_runs_real_training_steps():
    from crew2.bench import _train_throughput

    rate, precision = _train_throughput((64, 36), batch=4, steps=2)
    assert rate > 0 and precision in ("bf16", "fp32")


def test_storage_and_loader_benchmarks_report_sane_figures(tmp_path):
    from crew2.bench import bench_loader, bench_storage, natural_like
    from crew2.record.run import RecordConfig, record
    from crew2.sim.env import SimEnv

    env = SimEnv()
    env.reset(seed=0)
    sim = [env.step(env.action_of(True, False, False, False))[0] for _ in range(20)]
    natural = natural_like(10, 256, 144)
    assert natural[0].shape == (144, 256, 3) and natural[0].std() > 20
    report = bench_storage({"sim": sim, "natural": natural})
    assert 0 < report["sim_kb_per_frame"] < report["natural_kb_per_frame"] < report["sim_raw_kb_per_frame"]
    assert report["sim_psnr_db"] > 30 and report["sim_decode_per_s"] > 0
    path = tmp_path / "s.h5"
    record(RecordConfig(source="sim", out=path, frames=300))
    figures = bench_loader([path], workers=0, batch=16, batches=5)
    assert figures["loader_samples_per_s"] > 0



@pytest.mark.parametrize(("stop_at", "seeds"), [(None, [7, 8, 9]), (8, [7, 8])])
def test_demo_drives_every_episode_when_one_ends_early_and_stops_when_asked(monkeypatch, stop_at, seeds):
    """An episode that ends before its time (the car reached the end of the road) is not a stop: the demo goes
    on to the next seed. A stop request (Esc in the window, Ctrl+C, SIGTERM) ends the demo."""
    import crew2.cli as cli
    from crew2.drive.loop import DriveStats
    from crew2.drive.run import DriveResult

    driven = []

    def episode(config, model, title="", control=None):  # 10 frames of the 20 asked for: the road ended
        driven.append(config.seed)
        if config.seed == stop_at:
            control.stop.set()
        summary = {"distance_m": 30.0, "time_s": 0.5, "avg_speed_kmh": 216.0, "collisions": 0,
                   "collisions_per_km": 0.0, "offroad_s": 0.0, "score": 3.0}
        return DriveResult(DriveStats(steps=10), summary)

    monkeypatch.setattr(cli, "drive_live", episode)
    result = runner.invoke(app, ["demo", "--episodes", "3", "--seed", "7", "--seconds", "1"])
    assert result.exit_code == 0, result.output
    assert driven == seeds
