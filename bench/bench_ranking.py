"""Can the supernet's ranking be trusted? Three figures, printed, never asserted (issue 17).

    .venv/bin/python bench/bench_ranking.py --supernet <phase-2 checkpoint.pt> \
        --data data/synth_small/got10k [--archs 8] [--alone-steps 150] [--retests 3] \
        [--evaluations 20] [--seeds 3] [--val-sequences 6] [--val-frames 60]

1. **Kendall tau** between the supernet-inherited AO (BN recalibrated, as the search scores a
   candidate) and the AO of the same architecture trained alone for an equal, short budget:
   ``--alone-steps`` steps of 16 pairs from its inherited weights, with the small fine-tune's
   AdamW settings (phase 4 starts there too). ``--archs`` architectures spread evenly over
   the MACs range of the paper's space. Every AO is on the same frames, beside the AO of a
   tracker that stays at the first box.
2. **Test-retest**: the fitness of each of those architectures again under ``--retests``
   other draws of recalibration pairs; the spread of one candidate's fitness (mean standard
   deviation over re-draws) against the spread between candidates.
3. **Evolution against random search** at ``--evaluations`` equal evaluations, over
   ``--seeds`` seeds: the best fitness each found (``search_race.race``; a fitness evaluated
   once is remembered: an architecture's score does not depend on who asks).

``--json PATH`` writes every figure printed, per-architecture AOs included.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from scipy.stats import kendalltau

import harness
from search_race import race

from lighttrack.arch import Arch, sample
from lighttrack.data.sampling import PairDataConfig, SourceConfig, build_pair_dataset
from lighttrack.models.supernet import extract
from lighttrack.search.budget import Budget, BudgetCheck, CostModel
from lighttrack.search.evaluate import CandidateEvaluator, EvalConfig, load_supernet
from lighttrack.tracker.export import OrtEvalNet
from lighttrack.tracker.validation import score
from lighttrack.train.common import Dist, make_loader
from lighttrack.train.config import FinetuneStageConfig, OptimConfig, RunConfig, ScheduleConfig, TrackEvalConfig
from lighttrack.train.tracking import finetune


def spread_archs(k: int, costs: CostModel, seed: int = 0) -> list[Arch]:
    """``k`` architectures at evenly spaced quantiles of the MACs of 4000 random ones."""
    rng = np.random.default_rng(seed)
    pool = sorted({str(a): a for a in (sample(rng) for _ in range(4000))}.values(), key=lambda a: costs(a).macs)
    return [pool[round(q * (len(pool) - 1))] for q in np.linspace(0, 1, k)]


def train_alone(supernet, arch: Arch, data: str, steps: int, threads: int, seed: int = 0) -> torch.nn.Module:
    """``arch`` extracted with its inherited weights, then trained alone for ``steps`` steps."""
    net = extract(supernet, arch)
    pairs = PairDataConfig(sources=[SourceConfig(root=data, kind="got10k", split="train", frame_range=100,
                                                 pairs_per_epoch=16 * steps)], seed=seed)
    loader = make_loader(build_pair_dataset(pairs), 16, Dist(), shuffle=True, seed=seed)
    cfg = FinetuneStageConfig(epochs=1, batch_size=16, steps_per_epoch=steps,
                              optim=OptimConfig(name="adamw", lr=1e-3, weight_decay=1e-4),
                              schedule=ScheduleConfig(warmup_epochs=0.1, warmup_start_lr=1e-4, decay="cosine",
                                                      final_lr=1e-5),
                              backbone_lr_mult=1.0, eval=TrackEvalConfig(num_paths=0, before_training=False))
    finetune(net, loader, cfg, RunConfig(threads=threads), report=lambda metrics, state=None: None)
    return net.eval()


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--supernet", required=True, help="phase-2 checkpoint.pt")
    p.add_argument("--data", required=True, help="GOT-10k-layout root (train pairs, val sequences)")
    p.add_argument("--archs", type=int, default=8)
    p.add_argument("--alone-steps", type=int, default=150)
    p.add_argument("--retests", type=int, default=3)
    p.add_argument("--evaluations", type=int, default=20)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--val-sequences", type=int, default=6)
    p.add_argument("--val-frames", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    report = harness.Report("bench_ranking", args)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    supernet, sid = load_supernet(args.supernet)
    costs = CostModel()

    def evaluator(seed: int) -> CandidateEvaluator:
        cfg = EvalConfig(val_root=args.data, val_sequences=args.val_sequences, val_frames=args.val_frames,
                         recalibrate_root=args.data, recalibrate_batches=4, recalibrate_batch_size=8, seed=seed)
        return CandidateEvaluator(supernet, sid, cfg, costs)

    ev = evaluator(0)
    archs = spread_archs(args.archs, costs)
    inherited = [ev.evaluate(a) for a in archs]
    baseline = inherited[0]["baseline_ao"]
    report.figure("stay-put AO", baseline, note=f"a tracker that stays at the first box; {len(archs)} architectures, "
                  f"{costs(archs[0]).macs / 1e6:.0f}M-{costs(archs[-1]).macs / 1e6:.0f}M MACs; val: "
                  f"{args.val_sequences} sequences x {args.val_frames} frames")

    # 1. Kendall tau: inherited vs trained alone.
    alone = []
    for a, row in zip(archs, inherited):
        net = train_alone(supernet, a, args.data, args.alone_steps, args.threads)
        tracked = OrtEvalNet(net, args.threads) if ev.backend == "onnxruntime" else net
        alone.append(score(tracked, ev.val, ev.params, tempfile.mkdtemp(prefix="lt-rank-"))["ao"])
        print(f"  {costs(a).macs / 1e6:6.0f}M MACs  inherited AO {row['ao']:.4f}  alone AO {alone[-1]:.4f}  {a}",
              flush=True)
    report.record("archs", [{"arch": str(a), "macs": costs(a).macs, "inherited_ao": r["ao"], "alone_ao": v}
                            for a, r, v in zip(archs, inherited, alone)])
    tau, p_tau = kendalltau([r["ao"] for r in inherited], alone)
    report.figure("Kendall tau, inherited vs alone", tau, note=f"p {p_tau:.2f}; {args.alone_steps} steps of 16 pairs "
                  "each", p=p_tau)
    report.compare("AO trained alone (mean)", ("alone", float(np.mean(alone))), ("stay-put", baseline))

    # 2. Test-retest: other recalibration pairs.
    again = np.array([[row["ao"] for row in inherited]]
                     + [[evaluator(s).evaluate(a)["ao"] for a in archs] for s in range(1, args.retests + 1)])
    within, between = float(again.std(axis=0).mean()), float(again.mean(axis=0).std())
    report.compare("test-retest, AO spread", ("one candidate", within), ("between candidates", between),
                   note=f"{args.retests + 1} recalibration draws")

    # 3. Evolution vs random search at equal evaluations (search_race.race).
    check = BudgetCheck(Budget.parse("600M,2M"), costs)
    curves, distinct = race(ev.evaluate, check, args.evaluations, range(args.seeds),
                            max(4, args.evaluations // 3), 3)
    evo, rnd = (np.array([c[-1] for c in curves[k]]) for k in ("evolution", "random"))
    report.compare("best AO at equal evaluations, mean over seeds", ("evolution", float(evo.mean())),
                   ("random", float(rnd.mean())), note=f"{args.evaluations} evaluations (600M MACs, 2M params), "
                   f"{args.seeds} seeds; std {evo.std():.4f} / {rnd.std():.4f}; stay-put {baseline:.4f}; "
                   f"{distinct} distinct evaluations, {time.perf_counter() - t0:.0f} s in all")
    report.record("race", {"evolution": evo.tolist(), "random": rnd.tolist(), "distinct": distinct})


if __name__ == "__main__":
    main()
