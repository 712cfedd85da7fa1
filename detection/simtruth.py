"""`crew2 annotate auto --from sim`: a sim session's ground-truth boxes, rebuilt by replaying the simulator.

Sim sessions record their seed, noise and simulator config; the simulator and its noisy autopilot are
deterministic, so replaying them yields the recorded frames' exact world states. The recorded key vectors
are checked along the way: a session that does not replay identically is refused, not mislabelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crew2.data.session import SIM_TRUTH, Session
from crew2.detection.store import write_annotations
from crew2.errors import Crew2Error
from crew2.keys import KeyProfile
from crew2.sim.sources import SimSource
from crew2.sim.world import CLASSES, SimConfig


def sim_truth(path: Path) -> dict[int, tuple[np.ndarray, int]]:
    s = Session(path)
    meta, keys, n = s.meta, s.keys(), len(s)
    s.close()
    if meta.source != "sim" or not meta.sim:
        raise Crew2Error(f"{path}: not a simulator session (source '{meta.source}'): use --teacher or review")
    if meta.driver != "autopilot":
        raise Crew2Error(f"{path}: driven by the {meta.driver}, so it cannot be replayed; a sim session driven by "
                         "crew2 drive --record holds its ground-truth boxes already")
    config = SimConfig(**meta.sim["config"])
    profile = KeyProfile(meta.profile, tuple(meta.keys), dict(meta.roles))
    updates = {}
    with SimSource(config, profile, seed=int(meta.sim["seed"]), noise=float(meta.sim["noise"]),
                   late=float(meta.sim.get("late", 0.0))) as src:
        for i in range(n):
            src.grab()
            if not np.array_equal(src.read(), keys[i]):
                raise Crew2Error(f"{path}: frame {i} does not replay as recorded (another crew2 version?): "
                                 "its ground truth cannot be rebuilt")
            boxes = src.boxes().copy()
            if (meta.width, meta.height) != (config.width, config.height):  # recorded at another size
                sx, sy = meta.width / config.width, meta.height / config.height
                boxes[:, :4] *= [sx, sy, sx, sy]
            updates[i] = (boxes, SIM_TRUTH)
    return updates


def annotate_from_sim(path: Path) -> int:
    return write_annotations(path, sim_truth(path), list(CLASSES))
