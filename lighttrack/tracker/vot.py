"""VOT short-term, the paper's headline protocol: the dataset layout, the supervised
(reset-based) experiment, and accuracy, robustness and EAO as the VOT toolkit computes them.

Layout (as the VOT toolkit stores a workspace's ``sequences/``)::

    <root>/list.txt                    one sequence name per line
    <root>/<name>/sequence             key=value metadata (channels.color=color/%08d.jpg, ...)
    <root>/<name>/color/00000001.jpg   frames (older sets: the JPEGs beside groundtruth.txt)
    <root>/<name>/groundtruth.txt      per frame "x,y,w,h" or a polygon "x1,y1,...,x4,y4"
    <root>/<name>/<tag>.tag            per frame 0/1 (occlusion, camera_motion, ...)

The experiment (VOT-2019): the tracker starts on frame 1 from the ground truth; a frame
whose overlap with the ground truth is 0 is a failure, and the tracker starts again from
the ground truth ``skip_initialize`` (5) frames later. A trajectory holds per frame the box,
or ``1`` (initialisation), ``2`` (failure), ``0`` (not tracked), as the toolkit's result files.

Overlap is measured as the toolkit measures it: both regions rasterised on the pixel grid
of the image (a polygon as drawn by the toolkit's scan-line fill, a box as whole pixels),
intersection over union of the pixel sets. Accuracy leaves out the ``burnin`` (10) frames
from each initialisation; EAO averages the expected-overlap curve over the sequence
lengths [46, 291] (VOT-2019). A polygon becomes the tracker's axis-aligned start box by the
area-preserving rule of the short-term trackers' VOT code (centre of the points, the
bounding box scaled so its area is the rotated rectangle's).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lighttrack.data import fs
from lighttrack.data.fs import DataError

__all__ = ["INITIALIZATION", "FAILURE", "UNKNOWN", "VotProtocol", "VOT2019", "parse_region", "region_box",
           "overlap", "VotSequence", "VotDataset", "run_supervised", "write_trajectory", "read_trajectory",
           "sequence_overlaps", "accuracy", "fragments", "eao_curve", "score_vot", "open_vot", "evaluate_vot",
           "vot_line"]

UNKNOWN, INITIALIZATION, FAILURE = 0, 1, 2  # the toolkit's special codes in a trajectory


@dataclass(frozen=True)
class VotProtocol:
    skip_initialize: int = 5  # frames between a failure and the re-initialisation
    burnin: int = 10  # frames after each (re)initialisation left out of accuracy
    failure_overlap: float = 0.0  # overlap at or below this is a failure
    eao_low: int = 46  # EAO: the sequence-length interval (VOT-2019)
    eao_high: int = 291


VOT2019 = VotProtocol()


# -- regions -----------------------------------------------------------------------------------
def parse_region(text: str, where: str = "region") -> np.ndarray:
    """``x,y,w,h`` -> (4,) box, or ``x1,y1,...,xn,yn`` (n >= 3) -> (n, 2) polygon."""
    try:
        values = [float(v) for v in text.replace("\t", ",").replace(" ", ",").split(",") if v]
    except ValueError:
        raise DataError(f"{where}: not a region: {text.strip()!r}") from None
    if len(values) == 4:
        return np.asarray(values, np.float64)
    if len(values) >= 6 and len(values) % 2 == 0:
        return np.asarray(values, np.float64).reshape(-1, 2)
    raise DataError(f"{where}: {len(values)} values; a region is x,y,w,h or a polygon of x,y pairs")


def region_box(region: np.ndarray) -> np.ndarray:
    """The tracker's axis-aligned (4,) x,y,w,h box for a region. A polygon keeps its centre
    and its area: the bounding box of its points, scaled by sqrt(rectangle area / bounding
    area), as the short-term trackers' VOT code starts from a rotated ground truth."""
    if region.shape == (4,):
        return region.astype(np.float64)
    xs, ys = region[:, 0], region[:, 1]
    cx, cy = float(xs.mean()), float(ys.mean())
    x1, x2, y1, y2 = xs.min(), xs.max(), ys.min(), ys.max()
    bw, bh = x2 - x1, y2 - y1
    if len(region) == 4 and bw > 0 and bh > 0:
        side_a = np.linalg.norm(region[0] - region[1])
        side_b = np.linalg.norm(region[1] - region[2])
        s = math.sqrt(side_a * side_b / (bw * bh))
        w, h = s * bw + 1, s * bh + 1
    else:
        w, h = bw + 1, bh + 1
    return np.array([cx - (w - 1) / 2, cy - (h - 1) / 2, w, h], np.float64)


def _bounds(region: np.ndarray) -> tuple[int, int, int, int]:
    """Inclusive pixel bounds (left, top, right, bottom) of a region."""
    if region.shape == (4,):
        x, y, w, h = region
        return int(round(x)), int(round(y)), int(round(x + w - 1)), int(round(y + h - 1))
    return (int(round(region[:, 0].min())), int(round(region[:, 1].min())),
            int(round(region[:, 0].max())), int(round(region[:, 1].max())))


def _raster_box(box: np.ndarray, b: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((b[3] - b[1] + 1, b[2] - b[0] + 1), np.uint8)
    x, y, w, h = (float(v) for v in box)
    if x > b[2] or x + w - 1 < b[0] or y > b[3] or y + h - 1 < b[1]:
        return mask
    left, top = int(max(0.0, x - b[0])), int(max(0.0, y - b[1]))
    right, bottom = int(min(b[2], x + w - 1 - b[0])), int(min(b[3], y + h - 1 - b[1]))
    mask[top:bottom + 1, left:right + 1] = 1
    return mask


def _raster_polygon(poly: np.ndarray, b: tuple[int, int, int, int]) -> np.ndarray:
    """Scan-line fill of a polygon (vertices rounded to pixels) on the grid of bounds ``b``."""
    width, height = b[2] - b[0] + 1, b[3] - b[1] + 1
    mask = np.zeros((height, width), np.uint8)
    p = poly - np.array([b[0], b[1]])  # vertices already whole pixels (overlap rounds them)
    n = len(p)
    for row in range(height):
        nodes = []
        j = n - 1
        for i in range(n):
            yi, yj = p[i, 1], p[j, 1]
            if (yi <= row < yj) or (yj <= row < yi) or (yi < row <= yj) or (yj < row <= yi) or (yi == yj == row):
                r, k = yj - yi, p[j, 0] - p[i, 0]
                nodes.append(int(p[i, 0] + (row - yi) / r * k) if r != 0 else int(p[i, 0]))
            j = i
        nodes.sort()
        i = 0
        while i < len(nodes) - 1:
            if nodes[i] >= width:
                break
            if nodes[i] == nodes[i + 1] and i < len(nodes) - 2:  # a vertex on this row counts once
                i += 1
                continue
            if nodes[i + 1] >= 0:
                lo, hi = max(nodes[i], 0), min(nodes[i + 1], width - 1)
                mask[row, lo:hi + 1] = 1
            i += 2
    return mask


def _raster(region: np.ndarray, b: tuple[int, int, int, int]) -> np.ndarray:
    return _raster_box(region, b) if region.shape == (4,) else _raster_polygon(region, b)


def overlap(a: np.ndarray, b: np.ndarray, size: tuple[int, int] | None = None) -> float:
    """Pixel IoU of two regions ((4,) boxes or (n, 2) polygons), both cut to the
    ``size`` = (W, H) image when given."""
    a, b = np.round(a), np.round(b)  # the toolkit rasterises whole-pixel coordinates (half to even)
    ba, bb = _bounds(a), _bounds(b)
    u = (min(ba[0], bb[0]), min(ba[1], bb[1]), max(ba[2], bb[2]), max(ba[3], bb[3]))
    if u[0] >= u[2] or u[1] >= u[3]:
        return 1.0  # the toolkit's rule: two empty regions are the same region
    if size is not None:
        u = (max(0, u[0]), max(0, u[1]), min(size[0] - 1, u[2]), min(size[1] - 1, u[3]))
        if u[0] >= u[2] or u[1] >= u[3]:
            return 0.0  # both outside the image
    ma, mb = _raster(a, u).astype(bool), _raster(b, u).astype(bool)
    union = int(np.count_nonzero(ma | mb))
    return float(np.count_nonzero(ma & mb)) / union if union else 0.0


# -- layout ------------------------------------------------------------------------------------
@dataclass
class VotSequence:
    name: str
    frames: list[str]  # frame locations, in order
    regions: list[np.ndarray]  # ground truth per frame: (4,) box or (n, 2) polygon
    size: tuple[int, int]  # (W, H) of the frames
    tags: dict[str, np.ndarray] = field(default_factory=dict)  # tag -> (N,) bool

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) axis-aligned boxes of the ground truth (the tracker's start boxes)."""
        return np.stack([region_box(r) for r in self.regions])

    def read_frame(self, k: int) -> np.ndarray:
        return fs.read_image(self.frames[k])

    def __len__(self) -> int:
        return len(self.frames)


class VotDataset:
    """The sequences of a VOT-layout folder (``list.txt``; see the module docstring)."""

    def __init__(self, root: str | Path, names: list[str] | None = None):
        self.root = str(root)
        listing = fs.join(self.root, "list.txt")
        if names is None:
            if not fs.exists(listing):
                raise DataError(f"{listing}: not found (not a VOT sequences folder)")
            names = [n.strip() for n in fs.read_text(listing).splitlines() if n.strip()]
        if not names:
            raise DataError(f"{listing}: lists no sequences")
        self.sequence_names = names

    def __len__(self) -> int:
        return len(self.sequence_names)

    def _frames(self, d: str, meta: dict[str, str], n: int) -> list[str]:
        pattern = meta.get("channels.color")
        if pattern:
            return [fs.join(d, pattern % (k + 1)) for k in range(n)]
        folder = fs.join(d, "color") if fs.is_dir(fs.join(d, "color")) else d
        return [fs.join(folder, f) for f in fs.list_dir(folder) if f.lower().endswith((".jpg", ".png"))][:n]

    def sequence(self, i: int) -> VotSequence:
        name = self.sequence_names[i]
        d = fs.join(self.root, name)
        gt = fs.join(d, "groundtruth.txt")
        if not fs.exists(gt):
            raise DataError(f"{gt}: not found (sequence {name} of {fs.join(self.root, 'list.txt')})")
        lines = [ln for ln in fs.read_text(gt).splitlines() if ln.strip()]
        regions = [parse_region(ln, f"{gt}:{k + 1}") for k, ln in enumerate(lines)]
        meta_file = fs.join(d, "sequence")
        meta = {}
        if fs.exists(meta_file):
            meta = dict(ln.split("=", 1) for ln in fs.read_text(meta_file).splitlines() if "=" in ln)
        frames = self._frames(d, meta, len(regions))
        if len(frames) < len(regions) or not all(fs.exists(f) for f in frames[:1] + frames[-1:]):
            raise DataError(f"{d}: {len(regions)} ground-truth regions but the frames are missing "
                            f"(expected {frames[-1] if frames else 'color/00000001.jpg'})")
        size = (int(meta["width"]), int(meta["height"])) if "width" in meta and "height" in meta \
            else fs.image_size(frames[0])
        tags = {}
        for f in fs.list_dir(d):
            if f.endswith((".tag", ".label")):
                values = [ln.strip() for ln in fs.read_text(fs.join(d, f)).splitlines()]
                flags = np.zeros(len(regions), bool)
                flags[:min(len(values), len(regions))] = [v == "1" for v in values[:len(regions)]]
                tags[f.rsplit(".", 1)[0]] = flags
        return VotSequence(name, frames, regions, size, tags)


# -- the supervised experiment -----------------------------------------------------------------
def run_supervised(tracker, seq: VotSequence, protocol: VotProtocol = VOT2019) -> list:
    """One trajectory: per frame a (4,) box or a code (1 init, 2 failure, 0 not tracked).
    ``tracker`` has ``initialize(image, box)`` and ``track(image) -> (box, score)``; None is
    the tracker that stays at its start box (the baseline; no frame is read)."""
    n = len(seq)
    out: list = [UNKNOWN] * n
    starts = seq.boxes
    frame = 0
    while frame < n:
        start = starts[frame]
        if tracker is not None:
            tracker.initialize(seq.read_frame(frame), start)
        out[frame] = INITIALIZATION
        frame += 1
        while frame < n:
            box = start if tracker is None else np.asarray(tracker.track(seq.read_frame(frame))[0], np.float64)
            if overlap(box, seq.regions[frame], seq.size) <= protocol.failure_overlap:
                out[frame] = FAILURE
                frame += protocol.skip_initialize
                break
            out[frame] = box
            frame += 1
    return out


def _result_file(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / name / f"{name}_001.txt"


def write_trajectory(out_dir: str | Path, name: str, trajectory: list) -> Path:
    """The toolkit's result file ``<name>/<name>_001.txt`` (codes as integers, boxes as x,y,w,h)."""
    path = _result_file(out_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{e}\n" if isinstance(e, int) else ",".join(f"{v:.4f}" for v in e) + "\n"
                            for e in trajectory))
    return path


def read_trajectory(out_dir: str | Path, name: str) -> list:
    path = _result_file(out_dir, name)
    if not path.is_file():
        raise FileNotFoundError(f"VOT results for sequence {name} not found: {path}")
    out: list = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        values = [v for v in line.replace("\t", ",").split(",") if v.strip()]
        if len(values) == 1:
            out.append(int(float(values[0])))
        else:
            out.append(parse_region(line, f"{path}:{k}"))
    return out


# -- analysis ----------------------------------------------------------------------------------
def sequence_overlaps(trajectory: list, seq: VotSequence) -> np.ndarray:
    """(N,) overlap per frame; a code counts 0."""
    return np.array([0.0 if isinstance(e, int) else overlap(e, g, seq.size)
                     for e, g in zip(trajectory, seq.regions)])


def accuracy(trajectory: list, overlaps: np.ndarray, burnin: int = 10) -> tuple[float, int]:
    """(mean overlap, frames counted): codes left out, and ``burnin`` frames from each
    initialisation (the initialisation frame included)."""
    keep = np.ones(len(overlaps), bool)
    for k, e in enumerate(trajectory):
        if isinstance(e, int):
            keep[k] = False
            if e == INITIALIZATION:
                keep[k:k + burnin] = False
    return (float(overlaps[keep].mean()), int(keep.sum())) if keep.any() else (0.0, 0)


def fragments(trajectory: list, overlaps: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """(overlaps from an initialisation to the next failure, ended without a failure)."""
    fails = [k for k, e in enumerate(trajectory) if isinstance(e, int) and e == FAILURE]
    inits = [k for k, e in enumerate(trajectory) if isinstance(e, int) and e == INITIALIZATION]
    if not fails:
        return [(overlaps, True)]
    out = [(overlaps[i:f], False) for i, f in zip(inits, fails)]
    if len(inits) > len(fails):
        out.append((overlaps[inits[-1]:], True))
    return out


def eao_curve(parts: list[tuple[np.ndarray, bool]]) -> np.ndarray:
    """Expected overlap for every sequence length 0..L-1 (L = the longest fragment): the
    mean over fragments of their average overlap on frames 1..length (frame 0 is the
    initialisation); a fragment that ended in a failure counts 0 beyond its end, one that
    reached the end of its sequence counts only for the lengths it has."""
    length = max(len(o) for o, _ in parts)
    over = np.zeros((len(parts), length))
    mask = np.zeros((len(parts), length))
    for i, (o, ok) in enumerate(parts):
        over[i, :len(o)] = o
        mask[i, :len(o) if ok else length] = 1
    running = over.copy()
    running[:, 1:] = np.cumsum(over[:, 1:], axis=1) / np.arange(1, length)
    with np.errstate(invalid="ignore"):
        return (running * mask).sum(0) / mask.sum(0)


def score_vot(trajectories: dict[str, list], dataset: VotDataset | list[VotSequence],
              protocol: VotProtocol = VOT2019) -> dict:
    """Accuracy, robustness, EAO (and per tag) of ``{sequence name: trajectory}``, with the
    same figures of the tracker that stays at its start box (``baseline_*``). ``dataset``
    may be the sequences already read."""
    seqs = dataset if isinstance(dataset, list) else [dataset.sequence(i) for i in range(len(dataset))]

    def figures(traj_of: Callable[[VotSequence], list]) -> dict:
        acc_w = fail_w = weight = 0.0
        parts, failures = [], 0
        tag_acc: dict[str, list] = {}
        for seq in seqs:
            traj = traj_of(seq)
            ov = sequence_overlaps(traj, seq)
            a, _ = accuracy(traj, ov, protocol.burnin)
            f = sum(1 for e in traj if isinstance(e, int) and e == FAILURE)
            acc_w, fail_w, weight, failures = acc_w + a * len(seq), fail_w + f * len(seq), weight + len(seq), failures + f
            parts += fragments(traj, ov)
            for tag, flags in seq.tags.items():
                valid = np.array([not isinstance(e, int) for e in traj]) & flags
                fails = sum(1 for k, e in enumerate(traj) if isinstance(e, int) and e == FAILURE and flags[k])
                t = tag_acc.setdefault(tag, [0.0, 0, 0])
                t[0] += float(ov[valid].sum())
                t[1] += int(valid.sum())
                t[2] += fails
        curve = eao_curve(parts)
        window = curve[protocol.eao_low:protocol.eao_high + 1]
        return {"accuracy": acc_w / weight, "robustness": fail_w / weight, "failures": failures,
                # No run lasts into the interval (every fragment shorter than its start): the
                # toolkit's mean of that empty window is NaN; nothing is expected there, so 0.
                "eao": float(np.mean(window)) if len(window) else 0.0, "eao_curve": curve.tolist(),
                "tags": {t: {"accuracy": v[0] / v[1] if v[1] else float("nan"), "failures": v[2]}
                         for t, v in sorted(tag_acc.items())}}

    ours = figures(lambda s: trajectories[s.name])
    stay = figures(lambda s: run_supervised(None, s, protocol))
    longest = max(len(s) for s in seqs)
    return {"protocol": "vot", **ours, **{f"baseline_{k}": v for k, v in stay.items() if k != "tags"},
            "beats_baseline": bool(ours["eao"] > stay["eao"]), "sequences": len(seqs),
            "eao_interval": [protocol.eao_low, protocol.eao_high],
            "eao_interval_covered": longest > protocol.eao_high}


# -- a whole split -----------------------------------------------------------------------------
def open_vot(root: str | Path, max_sequences: int = 0) -> VotDataset:
    """A VOT sequences folder: ``root/list.txt``, or a toolkit workspace's ``root/sequences``."""
    root = str(root)
    if not fs.exists(fs.join(root, "list.txt")) and fs.exists(fs.join(root, "sequences", "list.txt")):
        root = fs.join(root, "sequences")
    ds = VotDataset(root)
    return VotDataset(root, ds.sequence_names[:max_sequences]) if max_sequences else ds


def evaluate_vot(tracker, dataset: VotDataset | list[VotSequence], out_dir: str | Path | None = None,
                 protocol: VotProtocol = VOT2019, report: Callable[[dict], None] | None = None,
                 plot: bool = True) -> dict:
    """The supervised experiment on every sequence with ``tracker`` (``initialize``/``track``),
    scored from the trajectories in memory. With ``out_dir``: the toolkit's result files
    ``<out_dir>/<name>/<name>_001.txt``, ``scores.json`` and (``plot``) the EAO curve beside
    the baseline's, appearing only when all are done. Every sequence and first region is
    read and checked before the first frame is tracked (``dataset`` may be the sequences
    already read)."""
    import json
    from contextlib import nullcontext

    from lighttrack.atomic import atomic_dir
    from lighttrack.tracker.tracker import first_box

    seqs = dataset if isinstance(dataset, list) else [dataset.sequence(i) for i in range(len(dataset))]
    for seq in seqs:
        try:
            first_box(seq.boxes[0], *seq.size)
        except ValueError as e:
            raise DataError(f"sequence {seq.name}: {e}") from None
    trajectories = {}
    with (atomic_dir(out_dir) if out_dir is not None else nullcontext()) as tmp:
        for i, seq in enumerate(seqs):
            trajectories[seq.name] = run_supervised(tracker, seq, protocol)
            if report is not None:
                report({"sequence": seq.name, "index": i, "frames": len(seq),
                        "failures": sum(isinstance(e, int) and e == FAILURE for e in trajectories[seq.name])})
        scores = score_vot(trajectories, seqs, protocol)
        if tmp is not None:
            for seq in seqs:
                write_trajectory(tmp, seq.name, trajectories[seq.name])
            (tmp / "scores.json").write_text(json.dumps(scores, indent=2))
            if plot:
                _plot_eao(scores, tmp / "eao.png", protocol)
    return scores


def _plot_eao(scores: dict, path: Path, protocol: VotProtocol) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(scores["eao_curve"], label=f"tracker (EAO {scores['eao']:.3f})")
    ax.plot(scores["baseline_eao_curve"], ":", label=f"stays at its start box (EAO {scores['baseline_eao']:.3f})")
    ax.axvspan(protocol.eao_low, protocol.eao_high, alpha=0.1, color="grey")
    ax.set(xlabel="Sequence length (frames)", ylabel="Expected overlap", ylim=(0, 1), title="Expected average overlap")
    ax.grid(True)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def vot_line(scores: dict) -> str:
    """One line: EAO, accuracy and failures beside the baseline's, and whether it beats it."""
    verdict = "beats it" if scores["beats_baseline"] else "does NOT beat it"
    short = "" if scores["eao_interval_covered"] else " (sequences shorter than the EAO interval: EAO is partial)"
    return (f"EAO {scores['eao']:.4f} (A {scores['accuracy']:.3f}, {scores['failures']} failures); a tracker that "
            f"stays at its start box: EAO {scores['baseline_eao']:.4f} (A {scores['baseline_accuracy']:.3f}, "
            f"{scores['baseline_failures']} failures) ({verdict}){short}")
