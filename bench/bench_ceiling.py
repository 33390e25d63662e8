"""The fixed-path ceiling (issue 17): how far one architecture gets on the embedded data,
trained alone, within wall-clock budgets on this machine.

    .venv/bin/python bench/bench_ceiling.py [--arch lighttrack-mobile] [--init CKPT]
        [--minutes 10 30 100] [--batch 16] [--lr 1e-3] [--data runs/bench/eval/embedded]

One StaticTracker (fresh, or from a phase-1 ClassSupernet / phase-2 TrackSupernet
checkpoint: its backbone, or the path extracted) is trained with AdamW on pairs of the
embedded train split (the labels and losses of docs/method.md §9, the loader of phase 2). At each
mark of training time (evaluation time not counted) it prints the mean cls and IoU
losses of the last 50 steps and the AO on the val split and on the first 10 train
sequences, each beside the AO of a tracker that stays at the first box on the same frames.
A val AO far below the train AO points at generalisation; both low with a low loss points
at the tracker or a train/track mismatch. Nothing is asserted.

It keeps a training loop of its own: AdamW on one fixed path to wall-clock marks, which the
library's loop (configured SGD/RMSprop by epochs) does not do.
"""
from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch

import harness
from lighttrack.arch import resolve
from lighttrack.data.readers import Got10k
from lighttrack.models.static import StaticTracker
from lighttrack.models.supernet import extract
from lighttrack.tracker import PRESETS
from lighttrack.tracker.evaluation import evaluate_split
from lighttrack.train.common import pair_batch
from lighttrack.train.losses import tracking_loss


def initial(arch, init: str | None) -> StaticTracker:
    from lighttrack.models import TrackSupernet

    if not init:
        return StaticTracker.build(arch)
    state = torch.load(init, map_location="cpu", weights_only=False)
    state = {k.removeprefix("module."): v for k, v in state.get("model", state).items()}
    if any(k.startswith(("neck.", "cls_head.")) for k in state):  # a phase-2 supernet
        net = TrackSupernet.for_state_dict(state)
        net.load_state_dict(state)
    else:  # a phase-1 backbone supernet
        net = TrackSupernet()
        net.load_backbone(state)
    return extract(net.eval(), arch)


def scores(model, reader) -> tuple[float, float]:
    from lighttrack.tracker.export import OrtEvalNet

    model.eval()
    s = evaluate_split(OrtEvalNet(model, torch.get_num_threads()), reader, None, PRESETS["vot2019"],
                       protocol="got10k")  # scored in memory
    model.train()
    return s["ao"], s["baseline_ao"]


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--arch", default="lighttrack-mobile")
    ap.add_argument("--init", help="phase-1 or phase-2 checkpoint.pt (default: fresh weights)")
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 30, 100])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=str(ROOT / "runs" / "bench" / "eval" / "embedded"))
    ap.add_argument("--save", help="write the trained StaticTracker state dict here at the end")
    args = ap.parse_args()
    report = harness.Report("bench_ceiling", args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from lighttrack.data import synth
    from lighttrack.data.sampling import PairDataConfig, SourceConfig, build_pair_dataset

    data = Path(args.data)
    if not (data / "got10k" / "val" / "list.txt").is_file():
        synth.write(data, size="default", workers=2)
    got = str(data / "got10k")
    val = Got10k(got, "val")
    train = Got10k(got, "train", Got10k(got, "train").sequence_names[:10])
    pairs = build_pair_dataset(PairDataConfig(sources=[SourceConfig(
        root=got, kind="got10k", split="train", frame_range=100, pairs_per_epoch=1_000_000)], seed=0))
    loader = torch.utils.data.DataLoader(pairs, batch_size=args.batch, shuffle=False, num_workers=1,
                                         persistent_workers=True, prefetch_factor=4)
    model = initial(resolve(args.arch), args.init).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    print(f"[ceiling] {args.arch}, init {args.init or 'fresh'}, AdamW lr {args.lr}, batch {args.batch}, "
          f"{args.threads} threads", flush=True)
    ao, base = scores(model, val)
    report.figure("val AO at 0.0 min", ao, "", f"step 0; a tracker that stays at the first box: {base:.4f}",
                  baseline=base)
    marks = sorted(args.minutes)
    trained, step, recent = 0.0, 0, []
    it = iter(loader)
    while marks:
        t0 = time.perf_counter()
        b = pair_batch(next(it), torch.device("cpu"))
        cls, reg = model(b["template"], b["search"])
        loss = tracking_loss(cls, reg, b)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        step += 1
        recent = (recent + [(loss.cls.item(), loss.reg.item())])[-50:]
        trained += time.perf_counter() - t0
        if trained >= 60 * marks[0]:
            marks.pop(0)
            c = sum(r[0] for r in recent) / len(recent)
            r = sum(r[1] for r in recent) / len(recent)
            v, vb = scores(model, val)
            t, tb = scores(model, train)
            report.figure(f"val AO at {trained / 60:.1f} min", v, "",
                          f"step {step} ({step * args.batch} pairs): cls {c:.3f}, IoU loss {r:.3f}; stays {vb:.4f}; "
                          f"train AO {t:.4f} (stays {tb:.4f})", baseline=vb, train_ao=t, train_baseline=tb,
                          cls=c, iou_loss=r, step=step)
    if args.save:
        torch.save(model.state_dict(), args.save)


if __name__ == "__main__":
    main()
