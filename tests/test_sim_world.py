"""The simulator's world, renderer and autopilot: determinism, ground truth, collisions, driving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from crew2.errors import Crew2Error
from crew2.sim.autopilot import Autopilot, NoisyAutopilot
from crew2.sim.env import SimEnv
from crew2.sim.render import Appearance, Renderer
from crew2.sim.world import BARRIER, CAR, CLASSES, CONE, TRUCK, Objects, SimConfig, World

ROOT = Path(__file__).resolve().parents[1]


def drive(env: SimEnv, steps: int) -> tuple[list[np.ndarray], list[dict]]:
    """A fixed key pattern: throttle, with bursts of steering both ways."""
    frames, infos = [], []
    for t in range(steps):
        frame, _, _, _, info = env.step(env.action_of(True, False, t % 30 < 4, 15 <= t % 30 < 19))
        frames.append(frame)
        infos.append(info)
    return frames, infos


@pytest.mark.parametrize("randomize", [False, True])
def test_same_seed_same_episode_and_other_seed_differs(randomize):
    config = SimConfig(track_km=1, randomize=randomize)
    a, b, c = SimEnv(config), SimEnv(config), SimEnv(config)
    a.reset(seed=7), b.reset(seed=7), c.reset(seed=8)
    fa, ia = drive(a, 60)
    fb, ib = drive(b, 60)
    fc, _ = drive(c, 60)
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))
    assert all(np.array_equal(x["boxes"], y["boxes"]) for x, y in zip(ia, ib, strict=True))
    assert ia[-1]["distance_m"] == ib[-1]["distance_m"] > 30
    assert not all(np.array_equal(x, y) for x, y in zip(fa, fc, strict=True))


def test_randomized_appearance_changes_looks():
    looks = {Appearance.sample(np.random.default_rng(s)) for s in range(6)}
    assert len(looks) == 6
    horizons = [look.horizon for look in looks]
    assert max(horizons) - min(horizons) > 0.02  # camera pitch jitter


def world_with(objects_spec, lanes=3, player_lane=1, **kw) -> World:
    """An empty road (no traffic, no obstacles) with the given objects: (class, s, lane, speed)."""
    world = World(SimConfig(traffic=0, obstacles=0, lanes=lanes, **kw), seed=0)
    track = world.track
    world.player.d = float(track.lane_centre(player_lane))
    if objects_spec:
        cls, s, lane, v = zip(*objects_spec, strict=True)
        world.set_objects(Objects.build(track, cls, s, track.lane_centre(np.array(lane)), v))
    return world


def test_boxes_cover_what_is_drawn():
    spec = [(CAR, 30, 1, 0), (TRUCK, 60, 0, 0), (CONE, 18, 2, 0), (CAR, 45, 2, 0)]
    world = world_with(spec)
    config = world.config
    renderer = Renderer(config.width, config.height, Appearance(), config.lanes)
    frame = renderer.render(world)
    assert sorted(frame.classes.tolist()) == sorted(c for c, *_ in spec)
    world.objects.alive[:] = False  # the same road and scenery, no obstacles
    empty = renderer.render(world).image
    changed = np.abs(frame.image.astype(int) - empty.astype(int)).sum(axis=2) > 0  # (H, W)
    inside = np.zeros_like(changed)
    for x1, y1, x2, y2 in frame.boxes:
        assert 0 <= x1 < x2 <= config.width and 0 <= y1 < y2 <= config.height
        box = changed[int(y1): int(np.ceil(y2)), int(x1): int(np.ceil(x2))]
        assert box.mean() > 0.5, "most of a box is the obstacle drawn in it"
        inside[int(y1): int(np.ceil(y2)), int(x1): int(np.ceil(x2))] = True
    assert changed[~inside].sum() == 0, "nothing is drawn outside the boxes"
    # Nearer obstacles have larger boxes.
    areas = (frame.boxes[:, 2] - frame.boxes[:, 0]) * (frame.boxes[:, 3] - frame.boxes[:, 1])
    car_near, car_far = np.flatnonzero(frame.classes == CAR)[np.argsort(frame.distances[frame.classes == CAR])]
    assert areas[car_near] > areas[car_far]


def test_hidden_obstacle_gets_no_box_and_half_hidden_is_cut():
    # A car right behind a truck (same lane, seen from behind the truck) is hidden.
    world = world_with([(TRUCK, 25, 1, 0), (CAR, 45, 1, 0)])
    frame = Renderer(256, 144, Appearance(), 3).render(world)
    assert frame.classes.tolist() == [TRUCK]
    # Nothing beyond the frame's edges: an obstacle beside the camera is clipped to the frame.
    world = world_with([(CAR, 7.0, 0, 0)])
    frame = Renderer(256, 144, Appearance(), 3).render(world)
    assert len(frame.boxes) == 1 and frame.boxes[0, 0] == 0


def test_driving_into_a_car_crashes_and_passing_beside_does_not():
    world = world_with([(CAR, 40, 1, 5.0)])
    for _ in range(200):
        world.step(True, False, False, False)
    assert world.metrics.collisions >= 1
    assert world.player.s < world.objects.s[0]  # stopped behind it, not through it
    world = world_with([(CAR, 40, 2, 5.0)])
    for _ in range(100):
        world.step(True, False, False, False)
    assert world.metrics.collisions == 0
    assert world.player.s > world.objects.s[0] + 20  # overtook it in the next lane


def test_fast_car_does_not_tunnel_through_a_cone():
    world = world_with([(CONE, 60, 1, 0)], fps=5)  # 5 steps/s: ~9 m per step at top speed
    world.player.v = 45.0
    for _ in range(10):
        world.step(True, False, False, False)
    assert world.metrics.collisions == 1
    assert not world.objects.alive[0]  # a cone is knocked away


@pytest.mark.parametrize("turn", [1, -1])
def test_curves_push_the_car_outwards(turn):
    world = world_with([])
    s = int(np.argmax(turn * world.track.curvature))  # the sharpest right (1) or left (-1) curve
    world.player.s, world.player.v, d0 = float(s), 40.0, world.player.d
    for _ in range(20):
        world.step(False, False, False, False)
    assert -turn * (world.player.d - d0) > 0.5  # outwards of a right-hand curve is to the left


def test_offroad_is_slow_and_counted():
    world = world_with([])
    world.player.d = world.track.half_width + 2
    for _ in range(400):
        world.step(True, False, False, False)
    assert world.offroad and world.metrics.offroad_time > 15
    assert world.player.v < 0.4 * world.top_speed


def test_autopilot_drives_episodes_with_few_collisions():
    config = SimConfig(track_km=1.5)
    km, collisions = 0.0, 0
    for seed in range(3):
        env = SimEnv(config)
        env.reset(seed=seed)
        pilot, done, terminated = Autopilot(), False, False
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_of(*pilot.act(env.world)))
            done = terminated or truncated
        assert terminated, "the autopilot reaches the end of the road in time"
        km += info["distance_m"] / 1000
        collisions += info["collisions"]
        assert info["distance_m"] / info["time_s"] * 3.6 > 50  # km/h
    assert collisions / km < 1.0


def test_noisy_autopilot_perturbs_keys_but_labels_the_expert():
    world = world_with([])
    noisy = NoisyAutopilot(Autopilot(), rate=2.0, seed=0, fps=world.config.fps)
    differing = 0
    for _ in range(400):
        executed, label = noisy.act(world)
        differing += executed != label
        world.step(*executed)
    assert differing > 20
    assert abs(world.player.d - world.track.lane_centre(1)) < 3  # it recovered, still on the road
    assert world.metrics.offroad_time < 2


def test_autopilot_pulls_out_from_a_standstill_off_its_lane_behind_a_closed_lane():
    # A noisy drive left the car standing astride two lanes, just behind a cone, with a barrier ahead: it
    # used to wait there for good (too close to what it overlapped to roll, and it steers only rolling).
    world = world_with([(BARRIER, 10.2 + 8.0, 1, 0.0), (CONE, 10.2 + 2.0, 1, 0.0)])
    world.objects.d[1] = 0.2
    world.player.s, world.player.d, world.player.v = 10.2, -1.99, 0.0
    pilot = Autopilot()
    for _ in range(200):
        world.step(*pilot.act(world))
    assert world.player.s > world.objects.s[0] + 20
    assert world.metrics.collisions == 0


@pytest.mark.parametrize("commit", [True, False])
def test_autopilot_without_commitment_keeps_a_lane_another_driver_took_it_into(commit):
    # DAgger labels: the model, not the expert, moved the car from the middle lane into the left one. An expert
    # that commits to its lane steers back out of it for no reason on the road; one that decides afresh stays.
    world = world_with([])
    world.player.v = 25.0
    pilot = Autopilot(commit=commit)
    world.step(*pilot.act(world))
    world.player.d = float(world.track.lane_centre(0))
    for _ in range(60):
        world.step(*pilot.act(world))
    assert int(world.track.lane_of(world.player.d)) == (1 if commit else 0)
    assert abs(world.player.d - world.track.lane_centre(1 if commit else 0)) < 0.8


def test_late_lane_changes_keep_the_lane_a_while_but_label_the_change():
    def run(late: float) -> tuple[int, float, int]:
        world = world_with([(CAR, 60, 1, 10.0)])
        world.player.v = 25.0
        noisy = NoisyAutopilot(Autopilot(), rate=0.0, seed=0, fps=world.config.fps, late=late)
        held = 0
        for _ in range(160):  # 8 s: the car stays in the traffic window (it is not wrapped ahead)
            executed, label = noisy.act(world)
            held += executed[2:] != label[2:]
            world.step(*executed)
        return held, world.player.s - world.objects.s[0], world.metrics.collisions

    assert run(0.0)[0] == 0
    held, ahead, collisions = run(1.0)
    assert held >= 20  # at least a second of steering held back while the label says change lanes
    assert ahead > 10 and collisions == 0  # it slowed behind the car and then overtook it
    with pytest.raises(ValueError, match="between 0 and 1"):
        NoisyAutopilot(Autopilot(), rate=0.0, seed=0, fps=20, late=1.5)


@pytest.mark.parametrize("kwargs", [dict(width=0), dict(height=-5), dict(lanes=7), dict(traffic=-1),
                                    dict(fps=0), dict(track_km=0)])
def test_bad_config_is_a_clear_error(kwargs):
    with pytest.raises(Crew2Error, match=r"must|too small"):
        SimConfig(**kwargs)


def test_dataset_yaml_lists_the_sim_classes():
    names = yaml.safe_load((ROOT / "datasets" / "sim.yaml").read_text())["names"]
    assert [names[i] for i in range(len(names))] == list(CLASSES)


def test_the_mean_of_episodes_is_a_mean_collisions_included():
    from crew2.sim.episodes import mean_summary

    eps = [{"distance_m": 1000.0, "time_s": 60.0, "collisions": 1, "offroad_s": 0.0, "score": 10.0},
           {"distance_m": 3000.0, "time_s": 120.0, "collisions": 3, "offroad_s": 2.0, "score": 30.0}]
    mean = mean_summary(eps)
    assert mean["collisions"] == 2 and mean["collisions_per_km"] == 1.0 and mean["distance_m"] == 2000.0
    assert mean["avg_speed_kmh"] == 80.0 and mean["offroad_s"] == 1.0 and mean["episodes"] == 2
