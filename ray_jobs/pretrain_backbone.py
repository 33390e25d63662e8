"""Phase 1 as a Ray Train job: the backbone supernet on ImageNet-layout data.

    python -m ray_jobs.pretrain_backbone --config configs/pretrain_tiny.yaml --name p1 [--set k=v ...]
    ray job submit --working-dir . -- python -m ray_jobs.pretrain_backbone --config ... --name p1
"""
from __future__ import annotations

from ray_jobs.train_job import Reporter, ddp_wrap, parse_args, resume_state, run_training, worker_setup
from lighttrack.train.config import PretrainConfig


def worker(loop_config: dict) -> None:
    from lighttrack.train import pretrain

    cfg, dist = worker_setup(PretrainConfig, loop_config)
    pretrain.run(cfg, dist, Reporter(loop_config, cfg.run.log_every, epochs=cfg.epochs), ddp_wrap,
                 resume_state(loop_config))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], "configs/pretrain.yaml", argv)
    return run_training(args, PretrainConfig, "pretrain", worker)


if __name__ == "__main__":
    from ray_jobs.common import run_main
    run_main(lambda argv: (main(argv), 0)[1])
