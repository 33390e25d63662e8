"""Does the search work? Issue 32's five figure sets on one device, without Ray or MLflow.

    python bench/bench_search_proof.py --out DIR [--device cuda] [--size small]
        [--parts speed,paths,rank,race,final] [--budget-s 480] [--p2-mult 10]

The one prepared GPU script (``scripts/gpu_rank.sh`` runs it on a bare GPU machine); every
figure goes to DIR/proof.json (or ``--json PATH``) as soon as it is measured, and a part that
does not fit what is left of ``--budget-s`` is skipped with the reason (the ground truth
stops at the training that would not fit). The trained phase-1 and phase-2 weights stay in
DIR (``phase1.pt``, ``supernet.pt``): a second call with ``--reuse DIR`` runs other parts on
them untrained, e.g. ``--parts rank`` while the device machine is still warm.

- ``speed``: phase-1 and phase-2 training steps at the config's batch, the recipe as it
  stood (loader in the training process, fp32) beside loader workers and bf16, pairs per
  second each, side by side in one run; the loader alone per worker count; a profiler
  summary of one phase-2 step (``DIR/profile_phase2.txt``).
- ``paths``: phase 1, then phase 2 at ``--p2-mult`` x the size's phase-2 epochs (the
  sandwich rule with in-place distillation, as the small config); 16 random in-budget
  paths, BN recalibrated, on the search's validation frames beside the stay-put AO, each
  under ``--retests`` draws of recalibration pairs (test-retest ratio).
- ``rank``: ``--archs`` architectures spread over the budget's MACs, each trained alone
  from the same phase-1 weights, twice (seeds 0 and 1): the ground truth's own Kendall tau
  (the noise ceiling), and inherited against trained alone with a bootstrap interval.
- ``race``: evolution against random search at ``--evaluations`` equal evaluations over
  ``--seeds`` seeds, on that supernet.
- ``final``: the race's best architecture and 3 random in-budget ones through the same
  phase 4 (no retrain), on the embedded val and on ``lighttrack data unlike`` sequences,
  each beside the stay-put AO.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a bare machine: the checkout, not an installed package
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402
from lighttrack.arch import Arch, sample  # noqa: E402
from lighttrack.search.budget import Budget, BudgetCheck, CostModel  # noqa: E402

import bench_small_recipes as recipes  # noqa: E402

PARTS = ("speed", "paths", "rank", "race", "final")
BUDGET = "600M,2M"  # LightTrack-Mobile's class, the pipeline's budget


class Figures(harness.Report):
    """The report: every figure printed and saved at once."""

    def put(self, key: str, value) -> None:
        self.record(key, value, echo=True)


def in_budget(n: int, seed: int, check: BudgetCheck) -> list[Arch]:
    """``n`` distinct uniformly random architectures inside the budget."""
    rng, out = np.random.default_rng(seed), {}
    while len(out) < n:
        a = sample(rng)
        if check(a):
            out[str(a)] = a
    return list(out.values())


def spread(n: int, check: BudgetCheck, costs: CostModel) -> list[Arch]:
    """``n`` in-budget architectures at evenly spaced quantiles of the MACs of 2000 such ones."""
    pool = sorted(in_budget(2000, 7, check), key=lambda a: costs(a).macs)
    return [pool[round(q * (len(pool) - 1))] for q in np.linspace(0, 1, n)]


def kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b)[0])


def bootstrap_tau(a, b, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of Kendall tau over architectures resampled with replacement."""
    a, b, rng = np.asarray(a), np.asarray(b), np.random.default_rng(seed)
    taus = []
    for _ in range(n):
        i = rng.integers(0, len(a), len(a))
        t = kendall(a[i], b[i]) if len(set(i)) > 2 else float("nan")
        if np.isfinite(t):
            taus.append(t)
    return (float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))) if taus else (float("nan"),) * 2


# -- speed -------------------------------------------------------------------------------------
def loader_rate(dataset, batch: int, workers: int, batches: int = 12) -> float:
    """Pairs (or images) a second that a DataLoader with ``workers`` delivers, nothing else running."""
    from lighttrack.train.common import Dist, make_loader

    loader = make_loader(dataset, batch, Dist(), shuffle=True, workers=workers)
    it = iter(loader)
    next(it)  # workers started, first batch in
    return batch * batches / harness.timeit(lambda: [next(it) for _ in range(batches)], warmup=0).median


def speed(data: Path, setup, steps: int, out: Path, figures: Figures) -> None:
    """Training steps as they stood against loader workers + bf16 and larger batches (the lr
    scaled linearly, as Goyal et al. and the paper's 8-GPU batch do), and the loader alone."""
    from lighttrack.data.sampling import build_pair_dataset
    from lighttrack.train.config import SupernetConfig
    from lighttrack.config import load

    cfg = load(SupernetConfig, ROOT / "configs/supernet_small.yaml")
    recipes._reroot(cfg.data, data)
    pairs = build_pair_dataset(cfg.data)
    device, batch = setup.device, setup.batch or cfg.batch_size
    cores = os.cpu_count() or 1
    counts = sorted({0, 2, min(4, cores), min(8, cores), max(1, cores - 2)})
    figures.put("speed_loader_pairs_per_s", {str(w): round(loader_rate(pairs, batch, w), 1) for w in counts})
    best = max(counts)
    amp = "bf16" if device.type == "cuda" else "off"
    # before: the loader in the training process, fp32, every step's values read off the device
    runs = {"before (0 workers, fp32, log every step)": (replace(setup, workers=0, steps=steps, amp="off",
                                                                 log_every=1), []),
            f"after ({best} workers, {amp}, log every 10)": (replace(setup, workers=best, steps=steps, amp=amp,
                                                                     log_every=10), [])}
    runs["after + channels_last"] = (replace(setup, workers=best, steps=steps, amp=amp, log_every=10,
                                             channels_last=True), [])
    for mult in (4, 8):  # the lr scaled with the batch
        runs[f"after, batch {batch * mult}"] = (replace(setup, workers=best, steps=steps, amp=amp, batch=batch * mult,
                                                        log_every=10), [f"optim.lr={cfg.optim.lr * mult}"])
    result = {}
    backbone = None
    for name, (run, extra) in runs.items():
        p1, state = recipes.phase1(data, run, epochs=1)
        backbone = backbone or state
        p2, _ = recipes.phase2(data, run, 1, backbone, ["epochs=1", *extra], curve=True)
        result[name] = {"phase1_images_per_s": round(p1["steps"] * p1["batch"] / p1["seconds"], 1),
                        "phase2_pairs_per_s": round(p2["steps"] * p2["batch"] / p2["seconds"], 1),
                        "phase2_loss_curve": p2["curve"]}
        figures.put("speed_steps", result)
    figures.put("speed_profile", profile_phase2(data, replace(setup, workers=best, amp=amp, log_every=10), backbone,
                                                out / "profile_phase2.txt"))


def profile_phase2(data: Path, setup, backbone: dict, path: Path) -> str:
    """torch.profiler over 6 phase-2 steps (after 4 of warm-up): the top ops by self time."""
    from torch.profiler import ProfilerActivity, profile, schedule

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if setup.device.type == "cuda" else [])
    key = "self_cuda_time_total" if setup.device.type == "cuda" else "self_cpu_time_total"
    tables: list[str] = []
    with profile(activities=acts, schedule=schedule(wait=0, warmup=4, active=6, repeat=1),
                 on_trace_ready=lambda prof: tables.append(prof.key_averages().table(sort_by=key, row_limit=30))) as prof:
        recipes.phase2(data, replace(setup, steps=11), 1, backbone, ["epochs=1"], on_step=prof.step)
    path.write_text("\n".join(tables))
    return str(path)


# -- paths, rank, race, final ----------------------------------------------------------------
def evaluator(supernet, data: Path, seed: int, frames: int):
    from lighttrack.search.cache import supernet_id
    from lighttrack.search.evaluate import CandidateEvaluator, EvalConfig

    got = str(data / "got10k")
    cfg = EvalConfig(val_root=got, val_frames=frames, recalibrate_root=got, recalibrate_batches=4,
                     recalibrate_batch_size=16, seed=seed)
    return CandidateEvaluator(supernet, supernet_id(supernet.state_dict()), cfg)


def paths(supernet, data: Path, check: BudgetCheck, n: int, retests: int, frames: int, figures: Figures) -> None:
    archs = in_budget(n, 1, check)
    aos = []
    for seed in range(retests):
        ev = evaluator(supernet, data, seed, frames)
        aos.append([ev.evaluate(a)["ao"] for a in archs])
        base = ev.evaluate(archs[0])["baseline_ao"]
        A = np.array(aos)
        within = float(A.std(0).mean()) if len(A) > 1 else float("nan")
        figures.put("paths", {"archs": len(archs), "frames": ev.val.frames, "stay_put_ao": base,
                              "ao_first_draw": A[0].round(4).tolist(), "above_stay_put": float((A[0] > base).mean()),
                              "mean_ao": float(A.mean()), "draws": len(A), "spread_within": within,
                              "spread_between": float(A.mean(0).std()),
                              "retest_ratio": within / max(float(A.mean(0).std()), 1e-9)})


def train_alone(p1_backbone: dict, arch: Arch, data: Path, setup, seed: int, epochs: int) -> torch.nn.Module:
    """``arch`` from the phase-1 weights (heads fresh), trained alone by the size's phase 4b
    for ``epochs`` (its cosine schedule over them)."""
    from lighttrack.models import TrackSupernet

    torch.manual_seed(seed)
    fresh = TrackSupernet()
    fresh.load_backbone(p1_backbone)
    _, tracker = recipes.phase4(data, setup, arch, fresh, ["retrain.enabled=false", "finetune.head_init=supernet",
                                                          f"run.seed={seed}", f"finetune.data.seed={seed}",
                                                          f"finetune.epochs={epochs}"])
    return tracker


def rank(supernet, p1_backbone: dict, data: Path, setup, check, costs, n: int, frames: int, epochs: int,
         figures: Figures, left) -> None:
    from lighttrack.tracker.validation import score

    archs = spread(n, check, costs)
    ev = evaluator(supernet, data, 0, frames)
    inherited = [ev.evaluate(a)["ao"] for a in archs]
    stay = ev.evaluate(archs[0])["baseline_ao"]
    alone: dict[int, list[float]] = {0: [], 1: []}
    took = 0.0
    for seed in (0, 1):
        for a in archs:
            if left() < took:  # the next training would not fit
                figures.put("rank_stopped", f"out of budget after {len(alone[0]) + len(alone[1])} trainings")
                break
            t0 = time.perf_counter()
            net = train_alone(p1_backbone, a, data, setup, seed, epochs).to(setup.device).eval()
            with torch.no_grad():
                alone[seed].append(score(net, ev.val, ev.params)["ao"])
            took = time.perf_counter() - t0
        figures.put("rank", rank_figures(archs, costs, inherited, alone, stay))
        if len(alone[seed]) < n:
            break


def rank_figures(archs, costs, inherited: list[float], alone: dict[int, list[float]], stay: float) -> dict:
    """Kendall tau of inherited against trained alone (seed 0) with its bootstrap interval,
    and, once both seeds are in, the ground truth against itself (the noise ceiling)."""
    r = {"archs": [str(a) for a in archs], "macs": [costs(a).macs for a in archs], "inherited": inherited,
         "alone_seed0": alone[0], "alone_seed1": alone[1], "stay_put_ao": stay}
    k, m = len(alone[0]), len(alone[1])
    if k >= 3:
        r["tau_inherited_vs_alone"] = kendall(inherited[:k], alone[0])
        r["tau_interval"] = bootstrap_tau(inherited[:k], alone[0])
    if m >= 3:
        r["tau_ceiling"] = kendall(alone[0][:m], alone[1])
        r["tau_inherited_vs_alone_mean"] = kendall(inherited[:m], np.mean([alone[0][:m], alone[1]], 0))
    return r


def race(supernet, data: Path, check: BudgetCheck, evaluations: int, seeds: int, frames: int,
         figures: Figures) -> str:
    from search_race import race as run_race  # here: it needs nevergrad, which a bare machine may lack

    ev = evaluator(supernet, data, 0, frames)
    best: dict[str, float] = {}

    def evaluate(a):
        row = ev.evaluate(a)
        best[str(a)] = row["ao"]
        return row

    curves, distinct = run_race(evaluate, check, evaluations, range(seeds), max(4, evaluations // 3), 3)
    evo, rnd = (np.array([c[-1] for c in curves[k]]) for k in ("evolution", "random"))
    found = max(best, key=best.get)
    figures.put("race", {"evaluations": evaluations, "seeds": seeds, "evolution": evo.tolist(), "random": rnd.tolist(),
                         "evolution_mean": float(evo.mean()), "evolution_std": float(evo.std()),
                         "random_mean": float(rnd.mean()), "random_std": float(rnd.std()), "distinct": distinct,
                         "stay_put_ao": ev.evaluate(sample(np.random.default_rng(0)))["baseline_ao"],
                         "found": found, "found_ao": best[found]})
    return found


def final(found: str, supernet, data: Path, unlike: Path, setup, check, frames: int, figures: Figures) -> None:
    from lighttrack.arch import parse
    from lighttrack.tracker.params import load_params
    from lighttrack.tracker.validation import open_validation, score

    vals = {"val": open_validation(str(data / "got10k"), "val", frames=frames),
            "unlike": open_validation(str(unlike), "val", frames=frames)}
    params = load_params("vot2019")
    out: dict = {}
    for name, arch in [("found", parse(found))] + [(f"random{i}", a) for i, a in enumerate(in_budget(3, 99, check))]:
        _, tracker = recipes.phase4(data, setup, arch, supernet, ["retrain.enabled=false"])
        tracker = tracker.to(setup.device).eval()
        with torch.no_grad():
            s = {k: score(tracker, v, params) for k, v in vals.items()}
        out[name] = {"arch": str(arch), **{k: {"ao": v["ao"], "stay_put_ao": v["baseline_ao"]} for k, v in s.items()}}
        figures.put("final", out)


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", default="small", help="embedded set written when --data is not given")
    p.add_argument("--data", type=Path, help="an embedded set's folder (got10k/, imagenet/)")
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--budget-s", type=float, default=480)
    p.add_argument("--p2-mult", type=int, default=10, help="phase 2 at this multiple of the small config's epochs")
    p.add_argument("--paths", type=int, default=16, help="random in-budget paths of the 'paths' part")
    p.add_argument("--retests", type=int, default=3)
    p.add_argument("--unlike", type=int, default=10, help="unlike sequences of the 'final' part")
    p.add_argument("--reuse", type=Path, help="a folder with this script's phase1.pt and supernet.pt: no training")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--alone-epochs", type=int, default=3,
                   help="ground-truth training: epochs of the small fine-tune (60 steps of 16 each; 10 = phase 4's)")
    p.add_argument("--evaluations", type=int, default=30)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--frames", type=int, default=0, help="validation frames per sequence (0 = whole sequences)")
    p.add_argument("--workers", type=int, default=min(8, max(0, (os.cpu_count() or 1) - 2)), help="loader workers")
    p.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)  # every stage's steps_per_epoch: a dry run
    p.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)  # every stage's batch_size: a dry run
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    if set(parts) - set(PARTS):
        p.error(f"unknown parts {sorted(set(parts) - set(PARTS))}; known: {', '.join(PARTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    begin, device = time.perf_counter(), torch.device(args.device)
    figures = Figures("bench_search_proof", args, device, path=args.json or args.out / "proof.json")
    figures.put("setup", {"device": str(device), "torch": torch.__version__, "cores": os.cpu_count(),
                          "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
                          "args": {k: str(v) for k, v in vars(args).items()}})
    amp = "bf16" if device.type == "cuda" else "off"
    setup = recipes.Setup(device, args.workers, args.steps, amp, args.batch)
    costs = CostModel()
    check = BudgetCheck(Budget.parse(BUDGET), costs)

    def left() -> float:
        return args.budget_s - (time.perf_counter() - begin)

    def attempt(name: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:  # noqa: BLE001: the figures measured so far are kept; the next part runs
            import traceback

            figures.put(f"{name}_error", traceback.format_exc()[-3000:])
        figures.put(f"{name}_seconds", round(time.perf_counter() - t0, 1))

    with tempfile.TemporaryDirectory(prefix="lt-proof-") as tmp:
        data = args.data
        if data is None:
            from lighttrack.data.synth import write

            data = Path(tmp) / "synth"
            write(data, seed=0, size=args.size, workers=max(1, os.cpu_count() or 1))
        if "speed" in parts:
            attempt("speed", lambda: speed(data, setup, args.steps or 30, args.out, figures))
        if not {"paths", "rank", "race", "final"} & set(parts):
            return 0
        if args.reuse:  # a call before trained them (on the device, in a folder kept between calls)
            from lighttrack.search.evaluate import load_supernet

            backbone = torch.load(args.reuse / "phase1.pt", map_location="cpu")
            supernet = load_supernet(args.reuse / "supernet.pt", str(device))[0]
        else:
            t0 = time.perf_counter()
            p1, backbone = recipes.phase1(data, setup)
            torch.save(backbone, args.out / "phase1.pt")
            p2, supernet = recipes.phase2(data, setup, args.p2_mult, backbone, [], curve=True)
            figures.put("supernet", {"phase1": p1, "phase2": p2, "seconds": time.perf_counter() - t0})
            torch.save({"model": supernet.state_dict()}, args.out / "supernet.pt")
        supernet.eval()
        if "paths" in parts:
            attempt("paths", lambda: paths(supernet, data, check, args.paths, args.retests, args.frames, figures))
        if "rank" in parts and left() > 0:
            attempt("rank", lambda: rank(supernet, backbone, data, setup, check, costs, args.archs, args.frames,
                                         args.alone_epochs, figures, left))
        found = None
        if "race" in parts and left() > 0:
            def run_race():
                nonlocal found
                found = race(supernet, data, check, args.evaluations, args.seeds, args.frames, figures)
            attempt("race", run_race)
        if "final" in parts and found is not None and left() > 0:
            from lighttrack.data.synth_unlike import write_unlike

            unlike = write_unlike(Path(tmp) / "unlike", sequences=args.unlike)
            attempt("final", lambda: final(found, supernet, data, unlike, setup, check, args.frames, figures))
        for name in ("rank", "race", "final"):
            if name in parts and name not in figures and f"{name}_error" not in figures:
                figures.put(f"{name}_skipped", f"{left():.0f} s of the budget left")
    figures.put("seconds", round(time.perf_counter() - begin, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
