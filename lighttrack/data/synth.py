"""The embedded dataset: a small GOT-10k-layout tracking set and an ImageNet-layout class set.

``write(out, seed, size)`` writes ``out/got10k/{train,val,test}`` and
``out/imagenet/{train,val}/<class>/*.JPEG`` (plus ``out/synth.json`` with the settings), and
the GOT-10k train sequences again as ImageNet VID, DET, COCO and crop511 (YouTube-BB style)
layouts in ``out/{vid,det,coco,crop511}`` (:mod:`lighttrack.data.synth_layouts`).
Everything is drawn from ``seed``: each sequence/image has its own generator, so the result
does not depend on the number of worker processes.

A tracking sequence (320x240 JPEG frames) shows a target sprite (a textured shape cut from a
scikit-image photograph) that moves with a random walk, bounces off the frame edges, scales,
deforms (per-axis scale, rotation, shear); 1-3 similar-looking distractors (a neighbouring
region of the same photograph, the same shape) move independently, in front or behind;
occluders pass over the target (a fully occluding one dwells over it); the camera pans, zooms
and shakes over a photograph, lighting drifts and frames are sometimes motion-blurred.
Labels are measured on the rendering itself: ``cover.label`` bins the visible fraction of the
target's pixels (GOT-10k bins: 0 none, 1..7 by 15% steps, 8 fully visible), ``absence.label``
is 1 when less than 1% is visible, ``cut_by_image.label`` when the box leaves the frame, and
``groundtruth.txt`` is the full extent of the target (clipped to the frame) in every frame.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from .shapes import PATCH, SHAPES, affine, hull, photos, points_box, render, shape_mask, texture

__all__ = ["SynthSize", "SIZES", "Difficulty", "DIFFICULTIES", "LEVELS", "level_of", "write", "render_sequence",
           "class_image", "cover_label"]

SPLITS = {"train": "Train", "val": "Val", "test": "Test"}


@dataclass(frozen=True)
class SynthSize:
    train: int  # tracking sequences per split
    val: int
    test: int
    frames: tuple[int, int]  # min, max frames per sequence
    cls_train: int  # classification images per class
    cls_val: int
    width: int = 320
    height: int = 240
    cls_image: int = 96  # classification image side, pixels
    difficulty: str = "medium"  # of the tracking sequences: a level of DIFFICULTIES, or "mixed"


@dataclass(frozen=True)
class Difficulty:
    """Multipliers of what makes a sequence hard to track; 1 everywhere is ``medium``, the
    set as it was first written (the same draws, so the same images)."""

    distractors: float = 1.0  # look-alike distractors: 1-3 at 1, none at 0, 2-6 at 2
    occlusion: float = 1.0  # the chance of a full occluder and the number of partial ones
    motion: float = 1.0  # target speed and camera shake
    deformation: float = 1.0  # scale, aspect, rotation and shear change over the sequence
    clutter: float = 1.0  # background: < 1 blurs the photograph, > 1 adds textured patches to it


DIFFICULTIES = {
    "easy": Difficulty(distractors=0.0, occlusion=0.3, motion=0.5, deformation=0.4, clutter=0.3),
    "medium": Difficulty(),
    "hard": Difficulty(distractors=2.0, occlusion=1.6, motion=1.8, deformation=1.6, clutter=2.0),
}
LEVELS = (*DIFFICULTIES, "mixed")  # mixed: easy, medium, hard by turns within every split


def level_of(difficulty: str, index: int) -> str:
    """The difficulty level of sequence ``index`` of a split written at ``difficulty``."""
    if difficulty == "mixed":
        return tuple(DIFFICULTIES)[index % len(DIFFICULTIES)]
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty {difficulty!r} is not one of {LEVELS}")
    return difficulty


SIZES = {
    "default": SynthSize(train=40, val=10, test=5, frames=(60, 100), cls_train=300, cls_val=50),
    "tiny": SynthSize(train=4, val=3, test=2, frames=(16, 24), cls_train=8, cls_val=3),
    # The small pipeline's (configs/*_small.yaml, data/synth_small): six times the training
    # sequences, every level of difficulty.
    "small": SynthSize(train=240, val=20, test=5, frames=(60, 100), cls_train=600, cls_val=50, difficulty="mixed"),
}


def cover_label(visible: float) -> int:
    """GOT-10k cover bin of a visible fraction: 0 none, 1..7 in 15% steps, 8 fully visible."""
    if visible < 0.01:
        return 0
    if visible >= 0.995:
        return 8
    return int(min(7, 1 + visible // 0.15))


def _smooth(rng: np.random.Generator, n: int, amp: float, period: tuple[float, float]) -> np.ndarray:
    t = np.arange(n)
    return amp * np.sin(2 * np.pi * t / rng.uniform(*period) + rng.uniform(0, 2 * np.pi))


def _walk(rng, n: int, w: int, h: int, speed: float) -> np.ndarray:
    """(n, 2) centres: random-walk velocity, bouncing inside the frame."""
    pos = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h])
    a = rng.uniform(0, 2 * np.pi)
    v = speed * np.array([np.cos(a), np.sin(a)])
    out = np.empty((n, 2))
    for t in range(n):
        out[t] = pos
        v = v + rng.normal(0, 0.3 * speed, 2)
        v *= min(1.0, 1.6 * speed / (np.linalg.norm(v) + 1e-9))
        pos = pos + v
        for k, lim in enumerate((w, h)):
            if not 0.05 * lim <= pos[k] <= 0.95 * lim:
                v[k] = abs(v[k]) if pos[k] < 0.05 * lim else -abs(v[k])
    return out


@dataclass
class _Sprite:
    tex: np.ndarray  # (P, P, 3) uint8
    mask: np.ndarray  # (P, P) float32
    affines: np.ndarray  # (n, 2, 3) sprite -> frame

    def __post_init__(self) -> None:
        self.hull = hull(self.mask)  # (K, 2): the exact box of the mask under any affine

    def box(self, t: int) -> np.ndarray:
        return points_box(self.hull, self.affines[t])


def _moving_sprite(rng, n: int, w: int, h: int, tex, mask, size: float, speed: float, shake,
                   deform: float = 1.0) -> _Sprite:
    centre = _walk(rng, n, w, h, speed) + shake
    scale = size * np.exp(_smooth(rng, n, rng.uniform(0.1, 0.45) * deform, (30, 90)))
    aspect = np.sqrt(rng.uniform(0.6, 1.6)) ** deform * np.exp(_smooth(rng, n, rng.uniform(0, 0.25) * deform, (15, 50)))
    angle = rng.uniform(-0.4, 0.4) * deform + _smooth(rng, n, rng.uniform(0, 0.5) * deform, (20, 80))
    shear = _smooth(rng, n, rng.uniform(0, 0.25) * deform, (15, 60))
    aff = np.stack([affine(centre[t], scale[t] * aspect[t], scale[t] / aspect[t], angle[t], shear[t])
                    for t in range(n)])
    return _Sprite(tex, mask, aff)


def _occluder(rng, target: _Sprite, n: int, full: bool, frames: tuple[int, int]) -> _Sprite | None:
    """A sprite that passes over the target; a full one dwells over it for the middle 40%."""
    dur = int(rng.integers(max(4, frames[0] // 6), max(5, frames[0] // 3) + 1))
    if dur >= n - 1:
        return None
    t0 = int(rng.integers(1, n - dur))
    boxes = np.array([target.box(t) for t in range(t0, t0 + dur)])
    side = float(np.hypot(boxes[:, 2], boxes[:, 3]).max())  # covers the target at any rotation
    tex, _ = texture(rng, PATCH)
    if full:
        occ_side, mask = 1.25 * side / 0.765, shape_mask("square")  # square fills 76.5% of the sprite
    else:
        occ_side, mask = rng.uniform(0.5, 0.9) * side, shape_mask(str(rng.choice(["circle", "square", "blob"])), rng=rng)
    u = rng.normal(size=2)
    u /= np.linalg.norm(u)
    reach = 0.5 * (occ_side + side) * 1.05
    perp = np.array([-u[1], u[0]]) * (0 if full else rng.uniform(-0.35, 0.35) * side)
    aff = np.full((n, 2, 3), np.nan)
    for k in range(dur):
        tau = k / (dur - 1)
        g = np.clip((tau - 0.3) / 0.3, -1, 0) + np.clip((tau - 0.7) / 0.3, 0, 1) if full else 2 * tau - 1
        c = boxes[k, :2] + boxes[k, 2:] / 2 + u * reach * g + perp
        aff[t0 + k] = affine(c, occ_side, occ_side, rng.uniform(-0.05, 0.05))
    return _Sprite(tex, mask, aff)


def _world(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """(h, w, 3) background: most of one photograph, randomly mirrored."""
    ph = photos()[int(rng.integers(len(photos())))]
    f = rng.uniform(0.6, 1.0)
    ch, cw = int(ph.shape[0] * f), int(ph.shape[1] * f)
    y, x = int(rng.integers(0, ph.shape[0] - ch + 1)), int(rng.integers(0, ph.shape[1] - cw + 1))
    img = cv2.resize(ph[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[:, ::-1]) if rng.random() < 0.5 else img


def _clutter(rng: np.random.Generator, world: np.ndarray, amount: float) -> np.ndarray:
    """The background with its clutter scaled: blurred below 1, textured patches added above."""
    if amount < 1:
        return cv2.GaussianBlur(world, (0, 0), 12 * (1 - amount))
    world = world.astype(np.float32)
    h, w = world.shape[:2]
    for _ in range(int(round(12 * (amount - 1)))):
        tex, _ = texture(rng, PATCH)
        side = rng.uniform(0.08, 0.2) * min(w, h)
        mask = shape_mask(str(rng.choice(list(SHAPES) + ["blob"])), rng=rng)
        render(world, tex, mask, affine(rng.uniform([0, 0], [w, h]), side, side * rng.uniform(0.6, 1.6),
                                        rng.uniform(-np.pi, np.pi)))
    return np.clip(world, 0, 255).astype(np.uint8)


def render_sequence(rng: np.random.Generator, n: int, w: int = 320, h: int = 240,
                    frames: tuple[int, int] = (60, 100), difficulty: Difficulty = Difficulty(),
                    ) -> tuple[list[np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """n frames (H, W, 3) uint8 RGB, target boxes (n, 4) xywh and labels (cover, absence, cut_by_image)."""
    d = difficulty
    # Camera: pan/zoom over a photograph larger than the frame, plus shake applied to everything.
    world = _world(rng, 2 * w, 2 * h)
    if d.clutter != 1:
        world = _clutter(rng, world, d.clutter)
    shake = (np.cumsum(rng.normal(0, 0.8, (n, 2)), 0) * 0.5 + rng.normal(0, 0.7, (n, 2))) * d.motion
    pan = np.stack([_smooth(rng, n, rng.uniform(10, 60), (40, 120)) for _ in range(2)], 1)
    zoom = 1.0 + _smooth(rng, n, rng.uniform(0, 0.12), (30, 100))
    base = rng.uniform([0.2 * w, 0.2 * h], [0.6 * w, 0.6 * h])
    # Target and similar distractors.
    shape = str(rng.choice(list(SHAPES) + ["blob"] * 3))
    tex, src = texture(rng, PATCH)
    size = rng.uniform(0.1, 0.25) * min(w, h) / 0.6  # sprite side; the shape fills ~60-90% of it
    speed = rng.uniform(1.0, 4.0) * min(w, h) / 240 * d.motion
    target = _moving_sprite(rng, n, w, h, tex, shape_mask(shape, rng=rng), size, speed, shake, d.deformation)
    behind, front = [], []
    for _ in range(int(round(int(rng.integers(1, 4)) * d.distractors))):
        dtex, _ = texture(rng, PATCH, like=src)
        s = _moving_sprite(rng, n, w, h, dtex, shape_mask(shape, rng=rng), size * rng.uniform(0.7, 1.3),
                           speed * rng.uniform(0.5, 1.5), shake, d.deformation)
        (front if rng.random() < 0.3 else behind).append(s)
    occluders = [o for o in [_occluder(rng, target, n, True, frames) if rng.random() < 0.6 * d.occlusion else None]
                 + [_occluder(rng, target, n, False, frames)
                    for _ in range(int(round(int(rng.integers(1, 3)) * d.occlusion)))] if o]
    light = 1.0 + _smooth(rng, n, rng.uniform(0.05, 0.35), (20, 80))
    cast = 1.0 + np.stack([_smooth(rng, n, 0.08, (30, 90)) for _ in range(3)], 1)
    p_blur = rng.uniform(0.0, 0.25)

    noise = rng.standard_normal((2 * h, 2 * w, 3), dtype=np.float32) * 2.0
    images, boxes = [], np.zeros((n, 4))
    cover, cut = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for t in range(n):
        z = zoom[t]
        cam = np.array([[z, 0, -(base[0] + pan[t, 0] + shake[t, 0]) * z],
                        [0, z, -(base[1] + pan[t, 1] + shake[t, 1]) * z]])
        canvas = cv2.warpAffine(world, cam, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        for s in behind:
            render(canvas, s.tex, s.mask, s.affines[t])
        vis = np.zeros((h, w), np.float32)
        drawn = render(canvas, target.tex, target.mask, target.affines[t])
        if drawn:
            vis[drawn[0]] = drawn[1]
        for s in front + occluders:
            if np.isfinite(s.affines[t]).all():
                drawn = render(canvas, s.tex, s.mask, s.affines[t])
                if drawn:
                    vis[drawn[0]] *= 1.0 - drawn[1]
        a = target.affines[t]
        full_area = target.mask.sum() * abs(np.linalg.det(a[:, :2]))
        cover[t] = cover_label(float(vis.sum()) / full_area)
        x, y, bw, bh = target.box(t)
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))
        cut[t] = int(x0 > x or y0 > y or x1 < x + bw or y1 < y + bh)
        boxes[t] = (x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0))
        canvas *= light[t] * cast[t]
        if rng.random() < p_blur:
            k = int(rng.integers(3, 12))
            kernel = np.zeros((k, k), np.float32)
            ang = rng.uniform(0, np.pi)
            c = (k - 1) / 2
            cv2.line(kernel, (int(round(c - c * np.cos(ang))), int(round(c - c * np.sin(ang)))),
                     (int(round(c + c * np.cos(ang))), int(round(c + c * np.sin(ang)))), 1.0, 1)
            canvas = cv2.filter2D(canvas, -1, kernel / kernel.sum())
        ox, oy = rng.integers(0, w), rng.integers(0, h)  # sensor noise: a window of one field
        canvas += noise[oy:oy + h, ox:ox + w]
        images.append(np.clip(canvas, 0, 255).astype(np.uint8))
    labels = {"cover": cover, "absence": (cover == 0).astype(np.int64), "cut_by_image": cut}
    return images, boxes, labels


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    path.write_bytes(buf.tobytes())


def write_got10k_sequence(d: Path, images: list[np.ndarray], boxes: np.ndarray, labels: dict[str, np.ndarray],
                          url: str, resolution: tuple[int, int], object_class: str = "textured shape",
                          motion_class: str = "random walk", difficulty: str = "medium", test: bool = False) -> None:
    """One sequence folder as GOT-10k has it: JPEG frames, ``groundtruth.txt`` (a test split:
    the first box only, no labels, no meta data), the three label files and ``meta_info.ini``."""
    d.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(images, 1):
        _write_jpeg(d / f"{k:08d}.jpg", img)
    rows = boxes[:1] if test else boxes
    (d / "groundtruth.txt").write_text("".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in rows))
    if test:
        return
    for key, values in labels.items():
        (d / f"{key}.label").write_text("".join(f"{int(v)}\n" for v in values))
    (d / "meta_info.ini").write_text(
        "[METAINFO]\n"
        f"url: {url}\n"
        "begin_time: 00:00:00\n"
        f"end_time: 00:00:{len(images) // 10:02d}\n"
        "anno_fps: 10Hz\n"
        f"object_class: {object_class}\n"
        f"motion_class: {motion_class}\n"
        "major_class: synthetic\n"
        "root_class: object\n"
        "motion_adverb: smoothly\n"
        f"resolution: ({resolution[0]}, {resolution[1]})\n"
        f"difficulty: {difficulty}\n")


def _write_sequence(job: tuple[str, str, int, int, int, SynthSize]) -> None:
    root, split, index, split_id, seed, size = job
    rng = np.random.default_rng((seed, split_id, index))
    n = int(rng.integers(size.frames[0], size.frames[1] + 1))
    level = level_of(size.difficulty, index)
    images, boxes, labels = render_sequence(rng, n, size.width, size.height, size.frames, DIFFICULTIES[level])
    name = f"GOT-10k_{SPLITS[split]}_{index + 1:06d}"
    write_got10k_sequence(Path(root) / split / name, images, boxes, labels, f"synthetic://lighttrack/seed-{seed}/{name}",
                          (size.width, size.height), difficulty=level, test=split == "test")


def class_image(rng: np.random.Generator, label: int, side: int = 96) -> np.ndarray:
    """(side, side, 3) uint8: a shape of class ``label`` on a cluttered photo background.

    Only the outline tells the class: the object's colour is random, its brightness is pushed
    away from the background's (lighter or darker at random, so no pixel template fits every
    image), its photo texture is faint; pose varies (position, scale, aspect, a small
    rotation), so a linear classifier on raw pixels stays far below a small CNN.
    """
    bg = cv2.GaussianBlur(texture(rng, side)[0].astype(np.float32), (0, 0), rng.uniform(1.0, 2.0))
    canvas = 0.6 * bg + 0.4 * bg.mean((0, 1))
    colour = rng.uniform(0, 255, 3)
    tex = texture(rng, PATCH)[0].astype(np.float32)
    tex = colour + 0.25 * (tex - tex.mean((0, 1)))  # flat random colour, faint texture
    lum_bg, lum_obj = canvas.mean(), tex.mean()
    target = lum_bg - 80 if lum_bg > 128 else lum_bg + 80
    tex = np.clip(tex + (target - lum_obj), 0, 255).astype(np.uint8)
    s = side * rng.uniform(0.6, 0.9)
    asp = np.sqrt(rng.uniform(0.85, 1.18))
    c = side / 2 + rng.uniform(-0.12, 0.12, 2) * side
    render(canvas, tex, shape_mask(label), affine(c, s * asp, s / asp, rng.uniform(-0.35, 0.35),
                                                   rng.uniform(-0.1, 0.1)))
    canvas = canvas * rng.uniform(0.8, 1.2) * rng.uniform(0.9, 1.1, 3)
    return np.clip(canvas + rng.normal(0, 2.0, canvas.shape), 0, 255).astype(np.uint8)


def _write_class_images(job: tuple[str, str, int, int, int, int]) -> None:
    root, split, label, count, seed, side = job
    d = Path(root) / split / SHAPES[label]
    d.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        rng = np.random.default_rng((seed, 100 + (split == "val"), label, k))
        _write_jpeg(d / f"{SHAPES[label]}_{k + 1:05d}.JPEG", class_image(rng, label, side))


def write(out: str | os.PathLike, seed: int = 0, size: str | SynthSize = "default", workers: int = 1,
          difficulty: str | None = None) -> dict:
    """Write the embedded dataset under ``out``; returns the summary also saved as synth.json.
    ``difficulty`` (a level, or "mixed") replaces the size's."""
    spec = SIZES[size] if isinstance(size, str) else size
    if difficulty is not None:
        level_of(difficulty, 0)  # an unknown level stops here
        spec = replace(spec, difficulty=difficulty)
    out = Path(out)
    got, imnet = out / "got10k", out / "imagenet"
    seq_jobs = [(str(got), split, i, sid, seed, spec)
                for sid, (split, count) in enumerate([("train", spec.train), ("val", spec.val), ("test", spec.test)])
                for i in range(count)]
    cls_jobs = [(str(imnet), split, label, count, seed, spec.cls_image)
                for split, count in (("train", spec.cls_train), ("val", spec.cls_val)) for label in range(len(SHAPES))]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            pool.map(_write_sequence, seq_jobs, chunksize=1)
            pool.map(_write_class_images, cls_jobs, chunksize=1)
    else:
        for job in seq_jobs:
            _write_sequence(job)
        for job in cls_jobs:
            _write_class_images(job)
    for split in SPLITS:
        count = getattr(spec, split)
        names = [f"GOT-10k_{SPLITS[split]}_{i + 1:06d}" for i in range(count)]
        (got / split).mkdir(parents=True, exist_ok=True)
        (got / split / "list.txt").write_text("\n".join(names) + "\n")
    # The same train sequences in the four other layouts of the paper's training mix.
    from .synth_layouts import write_layouts
    layouts = write_layouts(str(got), out, seed)
    summary = {"seed": seed, "size": asdict(spec), "classes": list(SHAPES), "layouts": layouts}
    (out / "synth.json").write_text(json.dumps(summary, indent=1))
    return summary
