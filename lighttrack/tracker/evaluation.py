"""Run the tracker over a whole split and score it; on request, write official result files.

The boxes are scored in memory (:func:`evaluate_split`); given an ``out_dir`` it also
writes them, in the official GOT-10k layout::

    OUT/<seq>/<seq>_001.txt    one "x,y,w,h" line per frame (frame 0 = the given box)
    OUT/<seq>/<seq>_time.txt   seconds per frame (frame 0 = initialisation)
    OUT/scores.json            ao, sr50, sr75, fps (GOT-10k) or success_auc, precision,
                               norm_precision, fps (OTB/LaSOT protocol); each figure also as
                               baseline_<figure>: a tracker that stays at the first box,
                               scored on the same frames; beats_baseline
    OUT/success.png            success curves of both

Scores are computed from the boxes as those files hold them (3 decimals, seconds 8),
exactly as the toolkit reads them, written or not (:func:`as_written`); fps = mean over
all frames of 1 / time (the toolkit's ``speed_fps``). :func:`score_results` scores files
already on disk.
A network is tracked by the lockstep evaluator (:mod:`lighttrack.tracker.lockstep`: the
sequences ``batch`` at a time, a frame's time is its step's wall time over the step's
frames); a ready :class:`Tracker` one sequence after another (times cover its calls,
not decoding). Spreading sequences over workers belongs to ``ray_jobs/``.
"""
from __future__ import annotations

import ast
import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lighttrack.atomic import atomic_dir
from lighttrack.data.fs import DataError, exists, image_size
from lighttrack.tracker import metrics
from lighttrack.tracker.lockstep import track_lockstep
from lighttrack.tracker.params import PRESETS, TrackerParams
from lighttrack.tracker.plots import plot_success
from lighttrack.tracker.tracker import Tracker, first_box

__all__ = ["run_sequence", "write_results", "read_results", "score_results", "score_tracks", "as_written",
           "evaluate_split", "read_split", "check_start",
           "protocol_of", "open_split", "stay_put_boxes", "baseline_line", "PRIMARY", "SCORES_NAME"]

SCORES_NAME = "scores.json"


def protocol_of(dataset) -> str:
    """``got10k`` for the GOT-10k reader, ``otb`` (one-pass) for LaSOT and generic folders."""
    return "got10k" if type(dataset).__name__.lower().startswith("got10k") else "otb"


def open_split(root: str | Path, split: str = "val", layout: str | None = None, max_sequences: int = 0):
    """A dataset reader; ``layout`` got10k | lasot | folder, or detected: ``root/<split>/list.txt``
    (GOT-10k), ``root/got10k/<split>/list.txt`` (the embedded dataset), ``root/<c>/<c>-<n>/``
    (LaSOT), else folders of frames with a groundtruth.txt."""
    from lighttrack.data.readers import open_tracking

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist" if not root.exists() else f"{root}: not a folder")
    if layout is None:
        if (root / "got10k" / split / "list.txt").is_file():
            root, layout = root / "got10k", "got10k"
        elif (root / split / "list.txt").is_file():
            layout = "got10k"
        elif splits := [d.name for base in (root, root / "got10k") if base.is_dir()
                        for d in sorted(base.iterdir()) if (d / "list.txt").is_file()]:
            raise DataError(f"{root}: no split {split!r} (no {split}/list.txt); its splits: {', '.join(splits)}")
        elif any((d / f"{d.name}-1").is_dir() for d in root.iterdir() if d.is_dir()):
            layout = "lasot"
        else:
            layout = "folder"
    reader = open_tracking(layout, str(root), split)
    if max_sequences:
        reader = open_tracking(layout, str(root), split, names=reader.sequence_names[:max_sequences])
    return reader


def run_sequence(tracker: Tracker, seq) -> tuple[np.ndarray, np.ndarray]:
    """Track one sequence from its first box -> (boxes (N, 4) xywh, seconds per frame (N,))."""
    n = len(seq.frames)
    boxes = np.zeros((n, 4))
    times = np.zeros(n)
    init = np.asarray(seq.boxes[0], np.float64)
    for k in range(n):
        image = seq.read_frame(k)
        start = time.perf_counter()
        if k == 0:
            tracker.initialize(image, init)
            boxes[0] = init
        else:
            boxes[k], _ = tracker.track(image)
        times[k] = time.perf_counter() - start
    return boxes, times


def _files(out_dir: Path, name: str) -> tuple[Path, Path]:
    return out_dir / name / f"{name}_001.txt", out_dir / name / f"{name}_time.txt"


def write_results(out_dir: str | Path, name: str, boxes: np.ndarray, times: np.ndarray) -> None:
    """Write one sequence in the official GOT-10k result format."""
    box_file, time_file = _files(Path(out_dir), name)
    box_file.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(box_file, np.asarray(boxes).reshape(-1, 4), fmt="%.3f", delimiter=",")
    np.savetxt(time_file, np.asarray(times).reshape(-1, 1), fmt="%.8f", delimiter=",")


def read_results(out_dir: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) and times (N,) of one sequence, as written by :func:`write_results`."""
    box_file, time_file = _files(Path(out_dir), name)
    if not box_file.is_file():
        raise FileNotFoundError(f"results for sequence {name} not found: {box_file}")
    boxes = np.loadtxt(box_file, delimiter=",", ndmin=2)
    times = np.loadtxt(time_file, delimiter=",", ndmin=1) if time_file.is_file() else np.zeros(0)
    return boxes, times


def _image_size(seq) -> tuple[float, float]:
    """(W, H): the toolkit's ``resolution`` from GOT-10k meta data, else frame 0's size
    (from the image header when the frame is a file; frames rendered in memory are read)."""
    resolution = getattr(seq, "meta", {}).get("resolution")
    if resolution:
        w, h = ast.literal_eval(str(resolution))
    elif isinstance(seq.frames[0], str) and exists(seq.frames[0]):
        w, h = image_size(seq.frames[0])
    else:
        h, w = seq.read_frame(0).shape[:2]
    return float(w), float(h)


def _absent(seq, protocol: str) -> np.ndarray:
    """Frames that do not count; GOT-10k uses the toolkit's rule (cover label 0) when present."""
    cover = getattr(seq, "meta", {}).get("cover") if protocol == "got10k" else None
    return np.asarray(cover) == 0 if cover is not None else np.asarray(seq.absent, bool)


def score_results(out_dir: str | Path, dataset, protocol: str | None = None,
                  plot: bool = True) -> dict:
    """Score the result files of every sequence of ``dataset``; writes scores.json (+ PNG).

    A split without ground truth beyond the first frame (GOT-10k test) gets fps only
    (``"scored": false``); its result files are what the benchmark server takes.
    """
    out_dir = Path(out_dir)
    sequences = [dataset.sequence(i) for i in range(len(dataset))]
    tracks = {seq.name: read_results(out_dir, seq.name) for seq in sequences}
    scores, stay_curve = _score(dataset, sequences, tracks, protocol, lambda name: _files(out_dir, name)[0])
    _write_scores(out_dir, scores, stay_curve, plot)
    return scores


def score_tracks(dataset, tracks: dict[str, tuple[np.ndarray, np.ndarray]], protocol: str | None = None,
                 sequences: list | None = None) -> dict:
    """:func:`score_results` of results held in memory, ``{name: (boxes (N, 4), seconds (N,))}``
    for every sequence of ``dataset``, scored as their files would be read back (boxes to 3
    decimals, seconds to 8); nothing is written. ``sequences``: the split as
    :func:`read_split` returned it (read again when not given)."""
    if sequences is None:
        sequences = [dataset.sequence(i) for i in range(len(dataset))]
    missing = [seq.name for seq in sequences if seq.name not in tracks]
    if missing:
        raise KeyError(f"no results for sequence(s) {', '.join(missing)}")
    return _score(dataset, sequences, tracks, protocol, lambda name: f"sequence {name}")[0]


def as_written(values: np.ndarray, decimals: int) -> np.ndarray:
    """``values`` as a result file holds them: each printed with ``decimals`` decimals
    (``"%.3f"``, the correctly rounded decimal) and read back, so memory and files score alike."""
    values = np.asarray(values, np.float64)
    out = np.round(values, decimals)  # rint(v * 10^d) / 10^d: the printed value unless v * 10^d is near a half
    scaled = values * 10.0 ** decimals
    with np.errstate(invalid="ignore"):  # nan and inf: kept by np.round, as printed and read back
        doubt = (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-3) | (np.abs(scaled) > 2.0 ** 52) & np.isfinite(scaled)
    out[doubt] = [float(f"{v:.{decimals}f}") for v in values[doubt]]  # printed, as the file has it
    return out


def _score(dataset, sequences: list, tracks: dict, protocol: str | None,
           where: Callable[[str], object]) -> tuple[dict, list | None]:
    """The scores dict and the stay-at-first-box success curve (for the plot; None when
    nothing is scored); ``where(name)`` names a sequence's results in errors."""
    protocol = protocol or protocol_of(dataset)
    if protocol not in ("got10k", "otb"):
        raise ValueError(f"unknown protocol {protocol!r}; use 'got10k' or 'otb'")
    ours, stay, all_times = [], [], []  # per sequence: pooled IoUs (got10k) or curves (otb)
    levels = _difficulties(sequences)  # the embedded set's difficulty per sequence, if it has one
    groups: dict[str, list[int]] = {}
    scored = True
    for i, seq in enumerate(sequences):
        boxes, times = tracks[seq.name]
        boxes = as_written(np.asarray(boxes).reshape(-1, 4), 3)
        times = as_written(np.asarray(times).reshape(-1), 8)
        all_times.append(times[np.isfinite(times) & (times > 0)])
        gt = np.asarray(seq.boxes, np.float64)
        if len(gt) == 1 < len(boxes):  # first-frame box only: nothing to score against
            scored = False
            continue
        if boxes.shape != gt.shape:
            raise ValueError(f"{where(seq.name)}: {boxes.shape[0]} boxes for {gt.shape[0]} ground-truth frames")
        if levels:
            groups.setdefault(levels[i], []).append(len(ours))
        ours.append(_sequence_score(boxes, gt, seq, protocol))
        stay.append(_sequence_score(stay_put_boxes(gt), gt, seq, protocol))
    times = np.concatenate(all_times) if all_times else np.zeros(0)
    fps = float(np.mean(1.0 / times)) if times.size else -1.0
    if not scored:
        return {"protocol": protocol, "scored": False, "fps": fps, "sequences": len(sequences),
                "frames": int(times.size)}, None
    s, b = _summary(ours, protocol), _summary(stay, protocol)
    key = PRIMARY[protocol]
    curve, baseline_curve = s.pop("success_curve"), b.pop("success_curve")
    scores = {"protocol": protocol, "scored": True, **s, **{f"baseline_{k}": v for k, v in b.items()},
              "beats_baseline": bool(s[key] > b[key]), "fps": fps, "sequences": len(sequences),
              "frames": int(times.size), "success_curve": curve}
    if len(groups) > 1:  # the same figures, and the baseline's, per difficulty level
        scores["by_difficulty"] = {
            level: {key: _summary([ours[j] for j in idx], protocol)[key],
                    f"baseline_{key}": _summary([stay[j] for j in idx], protocol)[key], "sequences": len(idx)}
            for level, idx in sorted(groups.items(), key=lambda g: (_LEVEL_ORDER.get(g[0], 9), g[0]))}
    return scores, baseline_curve


def _write_scores(out_dir: Path, scores: dict, stay_curve: list | None, plot: bool) -> None:
    """scores.json, and with ``plot`` the success curves of the tracker and the baseline."""
    (out_dir / SCORES_NAME).write_text(json.dumps(scores, indent=2))
    if plot and scores["scored"]:
        protocol = scores["protocol"]
        key = PRIMARY[protocol]
        thr = metrics.SUCCESS_THRESHOLDS_GOT10K if protocol == "got10k" else metrics.SUCCESS_THRESHOLDS_OTB
        name = "AO" if protocol == "got10k" else "AUC"
        plot_success({f"tracker ({name} {scores[key]:.3f})": (thr, np.asarray(scores["success_curve"])),
                      f"stays at the first box ({name} {scores['baseline_' + key]:.3f})": (thr, np.asarray(stay_curve))},
                     out_dir / "success.png", f"Success ({protocol})")


_LEVEL_ORDER = {"easy": 0, "medium": 1, "hard": 2}  # lighttrack.data.synth.DIFFICULTIES


def _difficulties(sequences: list) -> list[str]:
    """The ``difficulty`` of every sequence (a meta_info.ini key of the embedded set,
    ``lighttrack.data.synth``, in each sequence's meta data), or [] when the first sequence
    has none (any real dataset)."""
    metas = [getattr(seq, "meta", None) or {} for seq in sequences]
    if not metas or "difficulty" not in metas[0]:
        return []
    return [str(m.get("difficulty", "unknown")) for m in metas]


# The figure a protocol ranks by; its stay-at-first-box value is scores["baseline_" + key].
PRIMARY = {"got10k": "ao", "otb": "success_auc"}


def stay_put_boxes(gt: np.ndarray) -> np.ndarray:
    """(N, 4) boxes of a tracker that never moves from the first box, as its result file
    would hold them (3 decimals)."""
    first = [float(f"{v:.3f}") for v in np.asarray(gt[0], np.float64)]  # as write_results' "%.3f" rounds
    return np.repeat(np.asarray([first], np.float64), len(gt), 0)


def _sequence_score(boxes: np.ndarray, gt: np.ndarray, seq, protocol: str):
    absent = _absent(seq, protocol)
    if protocol == "got10k":
        return metrics.got10k_sequence_ious(boxes, gt, absent, _image_size(seq))
    return metrics.otb_sequence_curves(boxes, gt, absent)


def _summary(per_sequence: list, protocol: str) -> dict:
    if protocol == "got10k":
        return metrics.got10k_scores(np.concatenate(per_sequence))
    return metrics.otb_scores(per_sequence)


def baseline_line(scores: dict) -> str:
    """One line: the tracker's primary figure beside the stay-at-first-box one, and whether it beats it."""
    key = PRIMARY[scores["protocol"]]
    name = "AO" if key == "ao" else "success AUC"
    verdict = "beats it" if scores["beats_baseline"] else "does NOT beat it"
    return (f"{name} {scores[key]:.4f}; a tracker that stays at the first box: {scores['baseline_' + key]:.4f} "
            f"on the same frames ({verdict})")


def _results(net, sequences: list, params: TrackerParams, batch, device_crops: bool | None):
    """(index, name, boxes, times) per sequence: one by one for a ready Tracker, else lockstep."""
    if isinstance(net, Tracker):
        for i, seq in enumerate(sequences):
            yield (i, seq.name, *run_sequence(net, seq))
        return
    if device_crops is None:  # the whole loop on a GPU when the module is on one
        param = next(net.parameters(), None) if isinstance(net, torch.nn.Module) else None
        device_crops = param is not None and param.device.type == "cuda"
    for r in track_lockstep(net, sequences, params, batch=batch, device_crops=device_crops):
        yield r.index, r.name, r.boxes, r.times


def evaluate_split(net, dataset, out_dir: str | Path | None = None, params: TrackerParams = PRESETS["vot2019"],
                   protocol: str | None = None, report: Callable[[dict], None] | None = None,
                   plot: bool = True, batch: int | str = "auto", device_crops: bool | None = None,
                   sequences: list | None = None) -> dict:
    """Track every sequence of ``dataset`` (a reader) and score the boxes in memory; with
    ``out_dir``, also write its result files, scores.json and (``plot``) success.png.

    ``net`` is a network (torch module, ``TorchNet``, ``ExportedNet``, ``OrtEvalNet``), tracked in
    lockstep ``batch`` sequences at a time (``auto``: as many as memory and the device
    suit), or a ready ``Tracker`` (one sequence at a time; ``params`` unused).
    ``device_crops``: decode and crop on the module's device (default: when it is a GPU).
    ``sequences``: the split as :func:`read_split` returned it, for a caller that scores many
    networks on one split (read and checked here when not given).

    ``report`` (optional) is called after each sequence with ``{"sequence", "index", "frames"}``.
    Returns the scores dict (GOT-10k: ao, sr50, sr75, fps, ...).
    """
    if sequences is None:
        sequences = read_split(dataset)
    # Results appear in out_dir only once every sequence is tracked and scored: a failure
    # half way leaves no result files that a scorer or a reader would take for the split's
    # (and an out_dir that cannot be written stops the run before it starts).
    with (atomic_dir(out_dir) if out_dir is not None else nullcontext()) as tmp:
        tracks = {}
        for i, name, boxes, times in _results(net, sequences, params, batch, device_crops):
            tracks[name] = boxes, times
            if report is not None:
                report({"sequence": name, "index": i, "frames": len(boxes)})
        scores, stay_curve = _score(dataset, sequences, tracks, protocol, lambda name: f"sequence {name}")
        if tmp is not None:
            for name, (boxes, times) in tracks.items():
                write_results(tmp, name, boxes, times)
            _write_scores(tmp, scores, stay_curve, plot)
    return scores


def read_split(dataset) -> list:
    """Every sequence of ``dataset`` (a reader) with its annotations read and its first box
    checked against its first frame: what a bad split is refused by, before any tracking."""
    sequences = [dataset.sequence(i) for i in range(len(dataset))]
    if not sequences:
        raise DataError(f"{getattr(dataset, 'root', dataset)}: no sequences to evaluate")
    for seq in sequences:
        check_start(seq)
    return sequences


def check_start(seq) -> None:
    """Refuse a sequence whose first box does not lie on its first frame (the frame's size
    from the GOT-10k meta data or the image header, not a decode)."""
    if not len(seq.frames):
        raise DataError(f"sequence {seq.name}: no frames")
    try:
        w, h = _image_size(seq)
        first_box(seq.boxes[0], int(w), int(h))
    except (ValueError, SyntaxError) as e:
        raise DataError(f"sequence {seq.name} ({seq.frames[0]}): {e}") from None
