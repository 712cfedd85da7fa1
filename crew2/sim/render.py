"""Front-camera rendering of the world, with the 2D ground-truth box of every visible obstacle.

The road is drawn as scanlines: each screen row below the horizon sees the flat ground at one distance
`z = cam_height * f / (y - horizon)`, so the lateral position in metres of every pixel of a row is
`(x - W/2) * z / f - bend(z)`. Classifying those metres as road, rumble strip, lane marking or grass gives a
palette index per pixel; one gather through a per-row fogged palette makes the image. Obstacles and scenery
are boxes in road space, projected and drawn far to near; their boxes are clipped to the frame and cut down
to the part that nearer objects leave visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from crew2.sim.track import LANE_WIDTH
from crew2.sim.world import BARRIER, CAR, CONE, HORIZON, SIZE, TRUCK, World

Colour = tuple[int, int, int]  # RGB
CAMERA_AHEAD = 1.6  # m from the car's centre to the camera (bumper/hood view)
Z_FAR = 250.0  # m: nothing further is drawn
MIN_VISIBLE = 0.25  # an obstacle less visible than this (occluded or off-frame) gets no box
GRASS, RUMBLE, ROAD, MARK = 0, 2, 4, 6  # palette slots; the first three have two shades


@dataclass(frozen=True)
class Appearance:
    """Colours, light, fog and camera placement. `sample` draws a random one (domain randomisation)."""

    sky_top: Colour = (70, 130, 220)
    sky_horizon: Colour = (190, 215, 240)
    mountains: Colour = (110, 130, 150)
    grass: tuple[Colour, Colour] = ((70, 150, 60), (62, 138, 54))
    road: tuple[Colour, Colour] = ((105, 105, 110), (98, 98, 103))
    rumble: tuple[Colour, Colour] = ((220, 220, 220), (200, 40, 40))
    mark: Colour = (235, 235, 235)
    fog: Colour = (190, 210, 230)
    fog_distance: float = 400.0  # m at which fog covers 63% of a colour
    light: float = 1.0  # 1 = day; lower is dusk or night
    cam_height: float = 1.2  # m
    horizon: float = HORIZON  # the horizon's row as a fraction of the frame height
    fov_deg: float = 80.0  # horizontal field of view

    @staticmethod
    def sample(rng: np.random.Generator) -> Appearance:
        def jitter(c: Colour, amount: int = 25) -> Colour:
            return tuple(int(v) for v in np.clip(np.array(c) + rng.integers(-amount, amount + 1, 3), 0, 255))

        ground = [((70, 150, 60), (62, 138, 54)), ((170, 150, 100), (160, 140, 92)),
                  ((215, 220, 225), (200, 205, 212)), ((110, 120, 70), (100, 110, 64))]
        g = ground[int(rng.integers(len(ground)))]
        light = float(rng.choice([1.0, 1.0, 0.8, 0.55]))
        sky_top = jitter((70, 130, 220), 40) if light > 0.7 else jitter((40, 40, 90), 20)
        fog = jitter((190, 210, 230), 30)
        road = int(rng.integers(70, 140))
        return Appearance(
            sky_top=sky_top, sky_horizon=jitter((200, 200, 220), 40), mountains=jitter((110, 130, 150), 40),
            grass=(jitter(g[0], 15), jitter(g[1], 15)),
            road=((road, road, road + 5), (road - 7, road - 7, road - 2)),
            rumble=((220, 220, 220), jitter((200, 40, 40), 30)), mark=jitter((235, 235, 235), 15),
            fog=fog, fog_distance=float(rng.uniform(120, 600)), light=light,
            cam_height=float(rng.uniform(0.9, 1.6)), horizon=float(rng.uniform(0.36, 0.48)),
            fov_deg=float(rng.uniform(70, 90)),
        )


@dataclass
class Frame:
    """A rendered frame and its ground truth: boxes (N, 4) as x1, y1, x2, y2 pixels, their classes and
    distances (m, from the camera to the obstacle's near face)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (N, 4) float32
    classes: np.ndarray  # (N,) int64
    distances: np.ndarray  # (N,) float32

    def truth(self) -> np.ndarray:
        """The boxes as a session stores them: (N, 5) x1, y1, x2, y2, class, float32."""
        return np.concatenate([self.boxes, self.classes[:, None].astype(np.float32)], axis=1)


class Renderer:
    """Draws one `World` from the player's camera. Rows, fog and sky are precomputed per appearance."""

    def __init__(self, width: int, height: int, appearance: Appearance, lanes: int, seed: int = 0):
        self.w, self.h, self.look = width, height, appearance
        self.half = lanes * LANE_WIDTH / 2
        self.f = width / 2 / np.tan(np.radians(appearance.fov_deg) / 2)  # focal length, px
        self.horizon = height * appearance.horizon  # row of the horizon, px (fractional)
        self.top = int(np.floor(self.horizon + 0.5))  # first row that shows ground
        ys = np.arange(self.top, height) + 0.5 - self.horizon  # (R,) px below the horizon
        self.z = np.minimum(appearance.cam_height * self.f / np.maximum(ys, 0.5), Z_FAR)  # (R,) m
        colx = (np.arange(width) + 0.5 - width / 2) / self.f  # (W,) lateral metres per metre of depth
        self.zcol = (self.z[:, None] * colx[None, :]).astype(np.float32)  # (R, W) m from the camera axis
        self.mark_half = np.maximum(0.08, 0.6 * self.z / self.f).astype(np.float32)[:, None]  # (R, 1)
        fog = 1 - np.exp(-self.z / appearance.fog_distance)  # (R,)
        palette = np.array([*appearance.grass, *appearance.rumble, *appearance.road, appearance.mark],
                           np.float32) * appearance.light  # (7, 3)
        lut = palette[None] * (1 - fog[:, None, None]) + np.array(appearance.fog) * fog[:, None, None]
        self.lut = np.clip(lut, 0, 255).astype(np.uint8).reshape(-1, 3)  # (R*7, 3)
        self.row_base = (np.arange(len(self.z)) * 7).astype(np.int32)[:, None]  # (R, 1)
        self.sky = _sky_panorama(width, self.top, self.f, appearance, seed)  # (top, P + W, 3)

    def fog_colour(self, colour: np.ndarray | Colour, z: float, lit: bool = False) -> Colour:
        """`colour` seen through fog at distance z, darkened by the light unless it is a lamp (`lit`).
        Plain Python: it runs for every sprite part, where numpy's per-call overhead would dominate."""
        t = 1.0 - math.exp(-z / self.look.fog_distance)
        keep = (1.0 if lit else self.look.light) * (1.0 - t)
        fr, fg, fb = self.look.fog
        r, g, b = colour
        return int(r * keep + fr * t), int(g * keep + fg * t), int(b * keep + fb * t)

    def render(self, world: World) -> Frame:
        p, track = world.player, world.track
        cam_s = p.s + CAMERA_AHEAD
        img = np.empty((self.h, self.w, 3), np.uint8)

        # Sky and mountains scroll with the road's heading, which makes curves read as turns.
        pano = self.sky.shape[1] - self.w
        off = int(track.heading_at(cam_s) * self.f) % pano
        img[: self.top] = self.sky[:, off: off + self.w]

        centre = (track.bend(cam_s, self.z) - p.d).astype(np.float32)  # (R,) road centre per row
        xw = self.zcol - centre[:, None]  # (R, W) metres from the road's centre line
        a = np.abs(xw)
        phase = cam_s + self.z  # (R,) distance along the road seen by each row
        idx = np.where(a < self.half, ROAD + ((phase // 6) % 2)[:, None].astype(np.int32),
                       np.where(a < self.half + 0.7, RUMBLE + ((phase // 3) % 2)[:, None].astype(np.int32),
                                GRASS + ((phase // 10) % 2)[:, None].astype(np.int32)))
        u = np.mod(xw + self.half, LANE_WIDTH)
        dash = ((phase % 12) < 5)[:, None]  # (R, 1) dashed lane lines
        lane_line = (np.minimum(u, LANE_WIDTH - u) < self.mark_half) & (a < self.half - 1) & dash
        edge_line = np.abs(a - (self.half - 0.3)) < self.mark_half
        idx[lane_line | edge_line] = MARK
        img[self.top:] = np.take(self.lut, idx + self.row_base, axis=0)  # (R, W, 3)

        boxes, classes, dists = self._draw_objects(img, world, cam_s)
        return Frame(img, boxes, classes, dists)

    def _draw_objects(self, img: np.ndarray, world: World, cam_s: float) -> tuple[np.ndarray, ...]:
        o, sc, p, track = world.objects, world.track.scenery, world.player, world.track
        # Candidates: obstacles and scenery between the camera and the far plane.
        dz_o = o.s - o.length / 2 - cam_s
        keep_o = np.flatnonzero(o.alive & (dz_o > 0.3) & (dz_o < Z_FAR))
        lo, hi = np.searchsorted(sc.s, [cam_s + 1.0, cam_s + Z_FAR])
        keep_s = np.arange(lo, hi)
        n_o = len(keep_o)
        dz = np.concatenate([dz_o[keep_o], sc.s[keep_s] - cam_s])  # (N,) near face
        length = np.concatenate([o.length[keep_o], np.full(len(keep_s), 0.3)])
        width = np.concatenate([o.width[keep_o], np.where(sc.kind[keep_s] == 0, 3.0, 0.25)])
        height = np.concatenate([SIZE[o.cls[keep_o], 2], np.where(sc.kind[keep_s] == 0, 6.0, 1.2)])
        lateral = np.concatenate([o.d[keep_o], sc.d[keep_s]]) - p.d
        ground = self.horizon + self.look.cam_height * self.f / np.concatenate([dz, dz + length])  # near, far
        centre = track.bend(cam_s, np.concatenate([dz, dz + length])) + np.concatenate([lateral, lateral])
        zz = np.concatenate([dz, dz + length])
        x_mid = self.w / 2 + self.f * centre / zz
        half_px = self.f * np.concatenate([width, width]) / 2 / zz
        top_px = ground - self.f * np.concatenate([height, height]) / zz
        n = len(dz)
        near = (x_mid[:n] - half_px[:n], top_px[:n], x_mid[:n] + half_px[:n], ground[:n])
        far = (x_mid[n:] - half_px[n:], top_px[n:], x_mid[n:] + half_px[n:], ground[n:])
        rects = np.stack(near, axis=1)  # (N, 4) the near face
        outline = np.stack([np.minimum(near[0], far[0]), np.minimum(near[1], far[1]),
                            np.maximum(near[2], far[2]), near[3]], axis=1)  # (N, 4) near face + side

        near_l, far_l, out_l = rects.tolist(), np.stack(far, axis=1).tolist(), outline.tolist()
        for i in np.argsort(-dz).tolist():  # painter's order: far to near
            r = near_l[i]
            if r[2] - r[0] < 0.7 or out_l[i][2] < 0 or out_l[i][0] > self.w:
                continue
            if i < n_o:
                j = keep_o[i]
                self._draw_obstacle(img, int(o.cls[j]), tuple(o.colour[j].tolist()), r, far_l[i], float(dz[i]))
            else:
                self._draw_scenery(img, int(sc.kind[keep_s[i - n_o]]), r, float(dz[i]))

        return self._visible_boxes(outline, dz, n_o, o.cls[keep_o])

    def _visible_boxes(self, outline: np.ndarray, dz: np.ndarray, n_obstacles: int,
                       cls: np.ndarray) -> tuple[np.ndarray, ...]:
        """Clip each obstacle's outline to the frame and to what nearer objects leave visible.
        Nearer objects (obstacles and scenery) occlude; a pixel mask is built only where they overlap."""
        boxes, classes, dists = [], [], []
        occluders: list[tuple[int, int, int, int]] = []
        rects = outline.tolist()
        for i in np.argsort(dz).tolist():  # near to far
            x0, y0, x1, y1 = rects[i]
            cx0, cy0 = max(int(x0), 0), max(int(y0), 0)
            cx1, cy1 = min(math.ceil(x1), self.w), min(math.ceil(y1), self.h)
            if cx1 - cx0 < 1 or cy1 - cy0 < 1:
                continue
            if i < n_obstacles:
                full_area = max((x1 - x0) * (y1 - y0), 1e-6)
                hits = [o for o in occluders if o[0] < cx1 and o[2] > cx0 and o[1] < cy1 and o[3] > cy0]
                seen = None
                if hits:
                    seen = np.ones((cy1 - cy0, cx1 - cx0), bool)  # pixels no nearer object covers
                    for ox0, oy0, ox1, oy1 in hits:
                        seen[max(oy0 - cy0, 0): oy1 - cy0, max(ox0 - cx0, 0): ox1 - cx0] = False
                visible = (cx1 - cx0) * (cy1 - cy0) if seen is None else int(seen.sum())
                if visible / full_area >= MIN_VISIBLE:
                    vis = [max(x0, 0.0), max(y0, 0.0), min(x1, self.w), min(y1, self.h)]
                    if seen is not None:  # shrink to the visible pixels
                        rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
                        vis = [max(vis[0], cx0 + cols[0]), max(vis[1], cy0 + rows[0]),
                               min(vis[2], cx0 + cols[-1] + 1), min(vis[3], cy0 + rows[-1] + 1)]
                    if vis[2] - vis[0] >= 2 and vis[3] - vis[1] >= 2:
                        boxes.append(vis), classes.append(int(cls[i])), dists.append(float(dz[i]))
            occluders.append((cx0, cy0, cx1, cy1))
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.array(boxes, np.float32), np.array(classes, np.int64), np.array(dists, np.float32)

    def _draw_obstacle(self, img: np.ndarray, cls: int, colour: Colour, r: list[float],
                       far_rect: list[float], z: float) -> None:
        x0, y0, x1, y1 = (round(v) for v in r)
        w, h = x1 - x0, y1 - y0
        body = self.fog_colour(colour, z)
        if cls in (CAR, TRUCK):
            side = self.fog_colour(tuple(0.6 * c for c in colour), z)
            fx0, fy0, fx1, fy1 = (round(v) for v in far_rect)
            # Polygons include their corner pixels, rectangles here stop at x1 - 1, y1 - 1: match them.
            if fx0 < x0:  # the left side faces the camera
                pts = [[x0, y0], [fx0, fy0], [fx0, fy1 - 1], [x0, y1 - 1]]
                cv2.fillConvexPoly(img, np.array(pts, np.int32), side)
            if fx1 > x1:
                pts = [[x1 - 1, y0], [fx1 - 1, fy0], [fx1 - 1, fy1 - 1], [x1 - 1, y1 - 1]]
                cv2.fillConvexPoly(img, np.array(pts, np.int32), side)
        if w < 5 or h < 4:
            _fill(img, x0, y0, max(x1, x0 + 1), max(y1, y0 + 1), body)
            return
        if cls == CAR:
            cabin = y0 + int(0.45 * h)
            _fill(img, x0 + w // 8, y0, x1 - w // 8, cabin + 1, body)
            _fill(img, x0 + w // 5, y0 + h // 10, x1 - w // 5, cabin, self.fog_colour((40, 50, 70), z))
            _fill(img, x0, cabin, x1, y1 - h // 8, body)
            _fill(img, x0, y1 - max(1, h // 8), x1, y1, self.fog_colour((25, 25, 25), z))
            lamp = self.fog_colour((255, 30, 30), z, lit=True)
            _fill(img, x0 + 1, cabin + h // 10, x0 + w // 5 + 1, cabin + h // 5 + 1, lamp)
            _fill(img, x1 - 1 - w // 5, cabin + h // 10, x1 - 1, cabin + h // 5 + 1, lamp)
        elif cls == TRUCK:
            _fill(img, x0, y0, x1, y1 - h // 10, body)
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1 - h // 10), self.fog_colour((40, 40, 40), z), 1)
            _fill(img, x0, y1 - max(1, h // 10), x1, y1, self.fog_colour((25, 25, 25), z))
            lamp = self.fog_colour((255, 40, 20), z, lit=True)
            _fill(img, x0 + 1, y1 - h // 5, x0 + w // 8 + 1, y1 - h // 8 + 1, lamp)
            _fill(img, x1 - 1 - w // 8, y1 - h // 5, x1 - 1, y1 - h // 8 + 1, lamp)
        elif cls == CONE:
            pts = np.array([[x0, y1 - 1], [x1 - 1, y1 - 1], [(x0 + x1) // 2, y0]], np.int32)
            cv2.fillConvexPoly(img, pts, body)
            band = y0 + int(0.55 * h)
            cv2.line(img, (x0 + w // 4, band), (x1 - 1 - w // 4, band), self.fog_colour((240, 240, 240), z),
                     max(1, h // 8))
        elif cls == BARRIER:
            _fill(img, x0, y0, x1, y1, self.fog_colour((240, 240, 240), z))
            stripe = max(2, w // 6)
            for k in range(x0, x1, 2 * stripe):
                _fill(img, k, y0, min(k + stripe, x1), y1, body)

    def _draw_scenery(self, img: np.ndarray, kind: int, r: list[float], z: float) -> None:
        x0, y0, x1, y1 = (round(v) for v in r)
        w, h = x1 - x0, y1 - y0
        if kind == 0:  # a tree: trunk and canopy
            trunk = max(1, w // 6)
            cx = (x0 + x1) // 2
            _fill(img, cx - trunk // 2, y0 + h // 2, cx + trunk // 2 + 1, y1, self.fog_colour((90, 60, 30), z))
            cv2.circle(img, (cx, y0 + h // 3), max(1, w // 2), self.fog_colour((30, 100, 40), z), -1)
        else:  # a roadside post
            _fill(img, x0, y0, max(x1, x0 + 1), y1, self.fog_colour((235, 235, 235), z))
            _fill(img, x0, y0, max(x1, x0 + 1), y0 + h // 5 + 1, self.fog_colour((220, 40, 40), z))


def _fill(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: Colour) -> None:
    """Fill the half-open pixel rectangle [x0, x1) x [y0, y1), clipped to the image; empty if inverted
    (cv2.rectangle would swap inverted corners and paint outside the sprite)."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 > x0 and y1 > y0:
        img[y0:y1, x0:x1] = colour


def _sky_panorama(width: int, rows: int, f: float, look: Appearance, seed: int) -> np.ndarray:
    """A 360-degree strip of sky gradient and mountains, `rows` high, wrapped by `width` extra columns."""
    rng = np.random.default_rng(seed)
    pano = max(int(2 * np.pi * f), width)
    t = np.linspace(0, 1, max(rows, 1))[:, None]  # (rows, 1) 0 at the top
    sky = np.array(look.sky_top) * (1 - t) + np.array(look.sky_horizon) * t  # (rows, 3)
    img = np.repeat(sky[:, None, :], pano, axis=1) * look.light  # (rows, P, 3)
    x = np.arange(pano) / pano * 2 * np.pi
    ridge = sum(rng.uniform(0.3, 1.0) / k * np.sin(k * x + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3, 5, 8))
    height = rows * (0.12 + 0.1 * (ridge - ridge.min()) / max(np.ptp(ridge), 1e-6))  # (P,) px
    mask = np.arange(rows)[:, None] >= rows - height[None, :]  # (rows, P)
    fog = np.array(look.fog) * 0.5 + np.array(look.mountains) * 0.5
    img[mask] = fog * look.light
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.concatenate([img, img[:, :width]], axis=1)
