"""Phase 2 as a Ray Train job: the tracking supernet on tracking pairs.

    python -m ray_jobs.train_supernet --config configs/supernet_tiny.yaml --name p2 --set init=<phase-1 run id or path>
    ray job submit --working-dir . -- python -m ray_jobs.train_supernet --config ... --name p2
"""
from __future__ import annotations

from ray_jobs.train_job import (
    Reporter, ddp_wrap, input_state, parse_args, resume_state, run_training, worker_setup,
)
from lighttrack.train.config import SupernetConfig


def eval_archs(cfg: SupernetConfig):
    """The fixed paths whose val AO is tracked every epoch (checked against ``cfg.space``
    in the driver, so a stride-8 path on a paper-space supernet fails before training)."""
    from lighttrack.arch import get_space, resolve
    from lighttrack.train.sampling import PathSampler
    if cfg.eval.paths:
        return [get_space(cfg.space).check(resolve(p)) for p in cfg.eval.paths]
    return PathSampler(cfg.run.seed, cfg.space).eval_archs(cfg.eval.num_paths)


def worker(loop_config: dict) -> None:
    from lighttrack.data.sampling import build_pair_dataset
    from lighttrack.models import TrackSupernet
    from lighttrack.train.common import Dist, make_loader
    from lighttrack.train.track_eval import supernet_evaluator
    from lighttrack.train.tracking import train_supernet

    cfg, dist = worker_setup(SupernetConfig, loop_config)
    model = TrackSupernet(cfg.space)
    state = resume_state(loop_config)
    if state is None and cfg.init:
        model.load_backbone(input_state(loop_config, "init")["model"])
    data = build_pair_dataset(cfg.data)
    loader = make_loader(data, cfg.batch_size, dist, shuffle=True, workers=cfg.run.loader_workers,
                         seed=cfg.run.seed)
    evaluate = None
    if dist.is_main and (cfg.eval.num_paths or cfg.eval.paths):
        recal = make_loader(build_pair_dataset(cfg.data), cfg.batch_size, Dist(), shuffle=True,
                            seed=cfg.run.seed + 1)
        evaluate = supernet_evaluator(cfg.eval, eval_archs(cfg), recal, dist.device)
    report = Reporter(loop_config, cfg.run.log_every, epochs=cfg.epochs)
    train_supernet(model, loader, cfg, report, dist, ddp_wrap, state, evaluate)


def lineage(cfg: SupernetConfig) -> dict[str, str]:
    return {"lighttrack.eval_archs": " ".join(str(a) for a in eval_archs(cfg))[:5000]}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], "configs/supernet.yaml", argv)
    return run_training(args, SupernetConfig, "supernet", worker, lineage,
                   inputs=lambda cfg: {"init": (cfg.init, "pretrain")} if cfg.init else {})


if __name__ == "__main__":
    from ray_jobs.common import run_main
    run_main(lambda argv: (main(argv), 0)[1])
