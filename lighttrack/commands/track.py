"""``lighttrack track``: run the tracker on a video or a folder of frames and write an mp4.

    lighttrack track --frames DIR_OR_VIDEO --init x,y,w,h --arch lighttrack-mobile \\
        [--checkpoint ...] [--runtime openvino] --out out.mp4
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from lighttrack.commands.evaluate import add_net_arguments, build_net, tracker_params
from lighttrack.commands.argtypes import positive_float

__all__ = ["register", "read_frames"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def read_frames(source: str) -> Iterator[np.ndarray]:
    """BGR frames of a folder of images (name order) or of a video file."""
    path = Path(source)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"{path}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        for f in files:
            image = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{f}: not a readable image")
            yield image
        return
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video or folder")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open this video")
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                break
            yield image
    finally:
        cap.release()


def _parse_box(text: str) -> np.ndarray:
    try:
        box = np.array([float(v) for v in text.split(",")])
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"--init must be x,y,w,h with w, h > 0; got {text!r}")
    return box


def _first_frame_size(source: str) -> tuple[int, int]:
    """(width, height) of the first frame, read before the network is built."""
    for image in read_frames(source):
        return image.shape[1], image.shape[0]
    raise ValueError(f"{source}: the video has no frames")


def _run(args: argparse.Namespace) -> int:
    from lighttrack.atomic import atomic_file
    from lighttrack.tracker import Tracker
    from lighttrack.tracker.tracker import first_box

    init = _parse_box(args.init)
    try:
        first_box(init, *_first_frame_size(args.frames))
    except ValueError as e:
        raise ValueError(f"--init {args.init}: {e}") from None
    tracker = Tracker(build_net(args), tracker_params(args))
    out = Path(args.out)
    n, spent, boxes = 0, 0.0, []
    # The video (and the boxes file) appear only when every frame is tracked: a corrupt frame
    # half way leaves nothing that plays like a finished result.
    with atomic_file(out) as tmp_video, contextlib.ExitStack() as stack:
        tmp_boxes = stack.enter_context(atomic_file(args.boxes)) if args.boxes else None
        writer = None
        try:
            for bgr in read_frames(args.frames):
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                start = time.perf_counter()
                if n == 0:
                    tracker.initialize(rgb, init)
                    box, score = init, 1.0
                else:
                    box, score = tracker.track(rgb)
                spent += time.perf_counter() - start
                if writer is None:
                    h, w = bgr.shape[:2]
                    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), args.fps, (w, h))
                    if not writer.isOpened():
                        raise ValueError(f"{out}: OpenCV cannot write an mp4v video here")
                x, y, bw, bh = (int(round(v)) for v in box)
                cv2.rectangle(bgr, (x, y), (x + bw, y + bh), (0, 255, 0), 2)
                cv2.putText(bgr, f"{score:.2f}", (x, max(y - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
                writer.write(bgr)
                boxes.append(box)
                n += 1
        finally:
            if writer is not None:
                writer.release()
        if tmp_boxes is not None:
            np.savetxt(tmp_boxes, np.array(boxes), fmt="%.3f", delimiter=",")
    print(f"tracked {n} frames -> {out}; {n / spent:.1f} fps (tracker only: crop + network + post)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("track", help="track one target through a video or frames; write an mp4")
    p.add_argument("--frames", required=True, help="folder of frames or a video file")
    p.add_argument("--init", required=True, help="first-frame box x,y,w,h (pixels)")
    p.add_argument("--out", required=True, help="output video (.mp4, codec mp4v)")
    p.add_argument("--fps", type=positive_float, default=25.0, help="frame rate of the output video")
    p.add_argument("--boxes", default=None, help="also write the boxes (x,y,w,h per line) here")
    add_net_arguments(p)
    p.set_defaults(func=_run)
