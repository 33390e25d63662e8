"""Phase 2 as a Ray Train job: the tracking supernet on tracking pairs.

    python -m ray_jobs.train_supernet --config configs/supernet_tiny.yaml --name p2 --set init=<phase-1 run id or path>
    ray job submit --working-dir . -- python -m ray_jobs.train_supernet --config ... --name p2
"""
from __future__ import annotations

from ray_jobs.train_job import (
    Reporter, ddp_wrap, input_state, parse_args, resume_state, run_training, worker_setup,
)
from lighttrack.train.config import SupernetConfig


def worker(loop_config: dict) -> None:
    from lighttrack.train.tracking import run_supernet

    cfg, dist = worker_setup(SupernetConfig, loop_config)
    state = resume_state(loop_config)
    init = input_state(loop_config, "init") if state is None and cfg.init else None
    run_supernet(cfg, dist, Reporter(loop_config, cfg.run.log_every, epochs=cfg.epochs), ddp_wrap, state,
                 init["model"] if init else None)


def lineage(cfg: SupernetConfig) -> dict[str, str]:
    from lighttrack.train.track_eval import eval_archs
    return {"lighttrack.eval_archs": " ".join(str(a) for a in eval_archs(cfg))[:5000]}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], "configs/supernet.yaml", argv)
    return run_training(args, SupernetConfig, "supernet", worker, lineage,
                   inputs=lambda cfg: {"init": (cfg.init, "pretrain")} if cfg.init else {})


if __name__ == "__main__":
    from ray_jobs.common import run_main
    run_main(lambda argv: (main(argv), 0)[1])
