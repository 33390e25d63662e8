"""Training overhead: Ray Train step time vs a plain single-process PyTorch loop on the same
model and batch, and data-loader pairs/s vs the pairs/s a training step consumes.

    .venv/bin/python bench/bench_train.py --data DIR/got10k [--steps 10] [--batch 4] [--threads 1]
        [--json out.json]

Prints: plain step and Ray Train step (median of ``--steps`` after one of warm-up) side by
side, their ratio (the overhead), loader pairs/s (per worker process), step pairs/s. One
worker, on the CPU.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import harness  # noqa: E402
from lighttrack.arch import resolve  # noqa: E402
from lighttrack.train.losses import tracking_loss  # noqa: E402


def _pairs(root: str, n: int):
    from lighttrack.data.sampling import PairDataConfig, SourceConfig, build_pair_dataset
    return build_pair_dataset(PairDataConfig(sources=[SourceConfig(root=root, pairs_per_epoch=n)]))


def _steps(batch: dict, steps: int, threads: int) -> harness.Timing:
    """Step times of the phase-2 step on one fixed path and one fixed batch (the first step
    warms up)."""
    from lighttrack.models import TrackSupernet
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, arch = TrackSupernet(), resolve("lighttrack-mobile")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        cls, reg = model(batch["template"], batch["search"], arch)
        loss = tracking_loss(cls, reg, batch).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return harness.timeit(step, steps, warmup=1)


def _ray_worker(config: dict) -> None:
    import ray.train
    from lighttrack.train.common import Dist
    from lighttrack.train.tracking import train_supernet  # noqa: F401 (import cost like a job)
    from ray_jobs.train_job import ddp_wrap
    batch = config["batch"]
    step_s = _steps(batch, config["steps"], config["threads"]).median
    ray.train.report({"step_s": step_s})
    # Train V2 keeps metrics only with checkpoints: hand the figure back through a file too
    Path(config["out"]).write_text(str(step_s))


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--data", required=True, help="GOT-10k-layout root (e.g. the embedded set's got10k/)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    report = harness.Report("bench_train", a)
    torch.set_num_threads(a.threads)
    data = _pairs(a.data, 64)
    loaded = harness.timeit(lambda: [data[i] for i in range(32)], warmup=0)
    items, loader_rate = loaded.result, 32 / loaded.median
    from lighttrack.train.common import pair_batch
    # the loader gives uint8 crops; training normalises them on the device: once here, as a fixed batch
    batch = pair_batch({k: torch.stack([it[k] for it in items[:a.batch]]) for k in items[0]}, torch.device("cpu"))
    plain = _steps(batch, a.steps, a.threads).median

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    # with the dashboard: Ray Train's placement-group cleaner polls the State API, which lives
    # there; without it the cleaner decided the controller was dead and killed the worker
    ray.init(address="local", num_cpus=2)
    out = Path(tempfile.mkdtemp(prefix="lt-bench-train-")) / "step_s"
    fit_s = harness.timeit(lambda: TorchTrainer(
        _ray_worker, train_loop_config={"batch": batch, "steps": a.steps, "threads": a.threads, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=False),
        run_config=RunConfig(name="bench", storage_path=str(Path("/tmp/lt_bench").resolve()))).fit(),
        warmup=0).median
    ray_step = float(out.read_text())
    ray.shutdown()
    step_rate = a.batch / plain
    print(f"batch {a.batch} pairs, path lighttrack-mobile, {a.threads} thread(s), device cpu")
    report.compare("training step (overhead ratio)", ("Ray Train", ray_step * 1000), ("plain PyTorch", plain * 1000),
                   "ms", note=f"fit incl. start-up {fit_s:.1f} s")
    report.figure("loader", loader_rate, "pairs/s", note="one process; x loader_workers")
    report.figure("step consumes", step_rate, "pairs/s", note=f"loader workers needed: {step_rate / loader_rate:.2f}")


if __name__ == "__main__":
    main()
