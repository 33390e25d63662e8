"""Training overhead: Ray Train step time vs a plain single-process PyTorch loop on the same
model and batch, and data-loader pairs/s vs the pairs/s a training step consumes.

    .venv/bin/python bench/bench_train.py --data DIR/got10k [--steps 10] [--batch 4] [--threads 1]

Prints: plain step (s), Ray Train step (s), overhead ratio, loader pairs/s (per worker
process), step pairs/s. One worker, CPU (or the GPU when there is one).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lighttrack.arch import resolve  # noqa: E402
from lighttrack.train.losses import tracking_loss  # noqa: E402


def _pairs(root: str, n: int):
    from lighttrack.data.sampling import PairDataConfig, SourceConfig, build_pair_dataset
    return build_pair_dataset(PairDataConfig(sources=[SourceConfig(root=root, pairs_per_epoch=n)]))


def _steps(batch: dict, steps: int, threads: int) -> list[float]:
    """Step times (s) of the phase-2 step on one fixed path and one fixed batch."""
    from lighttrack.models import TrackSupernet
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, arch = TrackSupernet(), resolve("lighttrack-mobile")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        cls, reg = model(batch["template"], batch["search"], arch)
        loss = tracking_loss(cls, reg, batch).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times[1:]  # first step warms up


def _ray_worker(config: dict) -> None:
    import ray.train
    from lighttrack.train.common import Dist
    from lighttrack.train.tracking import train_supernet  # noqa: F401 (import cost like a job)
    from ray_jobs.train_job import ddp_wrap
    batch = config["batch"]
    times = _steps(batch, config["steps"], config["threads"])
    ray.train.report({"step_s": statistics.median(times)})
    # Train V2 keeps metrics only with checkpoints: hand the figure back through a file too
    Path(config["out"]).write_text(str(statistics.median(times)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="GOT-10k-layout root (e.g. the embedded set's got10k/)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = _pairs(a.data, 64)
    t = time.perf_counter()
    items = [data[i] for i in range(32)]
    loader_rate = 32 / (time.perf_counter() - t)
    batch = {k: torch.stack([it[k] for it in items[:a.batch]]) for k in items[0]}
    plain = statistics.median(_steps(batch, a.steps, a.threads))

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    # with the dashboard: Ray Train's placement-group cleaner polls the State API, which lives
    # there; without it the cleaner decided the controller was dead and killed the worker
    ray.init(address="local", num_cpus=2)
    t = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="lt-bench-train-")) / "step_s"
    TorchTrainer(_ray_worker, train_loop_config={"batch": batch, "steps": a.steps, "threads": a.threads,
                                                 "out": str(out)},
                 scaling_config=ScalingConfig(num_workers=1, use_gpu=False),
                 run_config=RunConfig(name="bench", storage_path=str(Path("/tmp/lt_bench").resolve()))).fit()
    fit_s = time.perf_counter() - t
    ray_step = float(out.read_text())
    ray.shutdown()
    step_rate = a.batch / plain
    print(f"batch {a.batch} pairs, path lighttrack-mobile, {a.threads} thread(s), device cpu")
    print(f"plain PyTorch step   {plain * 1000:8.1f} ms")
    print(f"Ray Train step       {ray_step * 1000:8.1f} ms   (fit incl. start-up {fit_s:.1f} s)")
    print(f"overhead ratio       {ray_step / plain:8.3f}")
    print(f"loader pairs/s       {loader_rate:8.1f}   (one process; x loader_workers)")
    print(f"step consumes        {step_rate:8.1f} pairs/s  -> loader workers needed: {step_rate / loader_rate:.2f}")


if __name__ == "__main__":
    main()
