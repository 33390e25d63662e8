"""Candidate evaluation speed: the lockstep evaluator against the one-sequence loop (issue 18).

    .venv/bin/python bench/bench_eval.py [--checkpoint SUPERNET.pt] [--arch lighttrack-mobile]
        [--threads 1 2] [--big-sequences 180] [--big-run 8] [--device cpu|cuda] [--work runs/bench/eval]
        [--json out.json]

One candidate (a supernet path, BN as stored) is tracked over two validation splits, side
by side in one run, by

* ``serial``: the one-sequence tracker, sequence after sequence, frame after frame, each
  frame read, decoded and cropped on the tracking thread (the evaluator before issue 18);
* ``lockstep-torch``: :mod:`lighttrack.tracker.lockstep` with the torch path, the
  sequences ``--batch`` at a time (``auto``), frames read ahead by a thread pool;
* ``lockstep-onnxruntime`` (CPU): the same with the path exported in memory to ONNX
  Runtime (``OrtEvalNet``; the export is timed as part of the candidate).

Splits: the embedded val split (default size, written on first use) and a split of
GOT-10k val's size written by ``real_size.write_got10k`` (``--big-sequences`` x 150
frames at 1280x720, hard links to four photographs); ``--big-run`` of its sequences are
tracked and candidates per minute are given for the whole split from the measured rate.
Per row: the set-up (the in-memory ONNX export of the template and 256 graphs; none for
the torch rows), frames per second of tracking (wall clock), seconds and candidates per
minute for the whole split (set-up once plus every frame at the measured rate; BN
recalibration comes on top and is the same for all), AO, and whether the AO
equals the serial run's (to the 3 decimals AO is reported in). Nothing is asserted. The
last line is the default search setting (backend auto: onnxruntime on a CPU) on the
GOT-10k-sized split at the first ``--threads`` value.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

import harness
from real_size import write_got10k

ROOT = Path(__file__).resolve().parents[1]

from lighttrack.arch import resolve
from lighttrack.data.readers import Got10k
from lighttrack.tracker import PRESETS, Tracker
from lighttrack.tracker.evaluation import evaluate_split
from lighttrack.tracker.runtime import TorchNet

PARAMS = PRESETS["vot2019"]


def splits(work: Path, big_sequences: int, big_run: int) -> dict[str, tuple[Got10k, int]]:
    """{name: (reader of the sequences to track, frames of the whole split)}."""
    from lighttrack.data import synth

    embedded = work / "embedded"
    if not (embedded / "got10k" / "val" / "list.txt").is_file():
        print(f"[bench] writing the embedded dataset (default size) to {embedded}", flush=True)
        synth.write(embedded, size="default", workers=2)
    small = Got10k(str(embedded / "got10k"), "val")
    out = {"embedded val": (small, sum(len(small.sequence(i).frames) for i in range(len(small))))}
    if big_sequences:
        big_root = work / f"got10k-val-{big_sequences}x150"
        write_got10k(big_root, big_sequences, 150, split_name="val")
        names = Got10k(str(big_root), "val").sequence_names
        out[f"GOT-10k-val size ({big_sequences}x150, 1280x720; {big_run} tracked)"] = (
            Got10k(str(big_root), "val", names[:big_run]), big_sequences * 150)
    return out


def candidate(checkpoint: str | None, arch: str, device: str):
    from lighttrack.models import TrackSupernet
    from lighttrack.search.evaluate import load_supernet

    if checkpoint:
        net, _ = load_supernet(checkpoint, device)
    else:
        torch.manual_seed(0)
        net = TrackSupernet("paper").to(device).eval()
    return net, net.path(resolve(arch)).eval()


def run(name: str, make_net, reader, out: Path, device: str) -> dict:
    """Set-up (an in-memory export) and tracking timed apart: the set-up is paid once a
    candidate, whatever the split's size, the tracking once a frame."""
    setup = harness.timeit(make_net, warmup=0, device=device)
    track = harness.timeit(lambda: evaluate_split(setup.result, reader, out, PARAMS, protocol="got10k", plot=False),
                           warmup=0, device=device)
    scores = track.result
    return {"name": name, "setup": setup.median, "seconds": track.median, "frames": scores["frames"],
            "ao": scores["ao"], "baseline_ao": scores["baseline_ao"]}


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--checkpoint", help="phase-2 supernet checkpoint.pt (default: random init)")
    ap.add_argument("--arch", default="lighttrack-mobile")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--big-sequences", type=int, default=180, help="0: skip the GOT-10k-sized split")
    ap.add_argument("--big-run", type=int, default=8, help="sequences of it to track")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "eval"))
    args = ap.parse_args()
    report = harness.Report("bench_eval", args, device=args.device)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    supernet, path = candidate(args.checkpoint, args.arch, args.device)
    on_cpu = torch.device(args.device).type == "cpu"
    print(f"[bench] candidate {args.arch} on {args.device}; supernet "
          f"{args.checkpoint or 'random init (seed 0)'}", flush=True)

    def ort():
        from lighttrack.models.supernet import extract
        from lighttrack.tracker.export import OrtEvalNet

        return OrtEvalNet(extract(supernet, path.arch), torch.get_num_threads(), sides=(256,))

    makers = {"serial": lambda: Tracker(TorchNet(path), PARAMS), "lockstep-torch": lambda: path}
    if on_cpu:
        makers["lockstep-onnxruntime"] = ort
    last = None
    for split, (reader, split_frames) in splits(work, args.big_sequences, args.big_run).items():
        for threads in args.threads:
            torch.set_num_threads(threads)
            print(f"\n{split}, {threads} thread(s): {sum(len(reader.sequence(i).frames) for i in range(len(reader)))}"
                  f" frames tracked", flush=True)
            runs = []
            with tempfile.TemporaryDirectory(dir=work) as tmp:
                for name, make in makers.items():
                    runs.append(run(name, make, reader, Path(tmp) / name, args.device))
            serial = runs[0]
            print(f"  (a tracker that stays at the first box: AO {serial['baseline_ao']:.4f} on these frames)")
            fps = [r["frames"] / r["seconds"] for r in runs]
            per_candidate = [r["setup"] + split_frames / f for r, f in zip(runs, fps)]  # set-up once, every frame
            rows = [{"evaluator": r["name"], "setup_s": r["setup"], "fps": f, "s_per_candidate": c,
                     "candidates_per_min": 60 / c, "x_serial": per_candidate[0] / c, "ao": r["ao"],
                     "ao_equal": round(r["ao"], 3) == round(serial["ao"], 3)}
                    for r, f, c in zip(runs, fps, per_candidate)]
            report.table(f"{split}, {threads} thread(s)", rows, setup_s=".1f", fps=".1f", s_per_candidate=".0f",
                         candidates_per_min=".3f", ao=".4f", x_serial=".2f")
            if threads == args.threads[0]:
                last = (rows[0], next(r for r in rows if r["evaluator"] == ("lockstep-onnxruntime" if on_cpu
                                                                           else "lockstep-torch")))
    print()
    serial, lockstep = last
    report.compare("lockstep/serial, candidates per minute", (lockstep["evaluator"], lockstep["candidates_per_min"]),
                   ("serial", serial["candidates_per_min"]), note=f"AO equal: {lockstep['ao_equal']}; "
                   f"{args.threads[0]} thread(s), the last split")


if __name__ == "__main__":
    main()
