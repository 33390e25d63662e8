"""Phase 1 as a Ray Train job: the backbone supernet on ImageNet-layout data.

    python -m ray_jobs.pretrain_backbone --config configs/pretrain_tiny.yaml --name p1 [--set k=v ...]
    ray job submit --working-dir . -- python -m ray_jobs.pretrain_backbone --config ... --name p1
"""
from __future__ import annotations

from ray_jobs.train_job import Reporter, ddp_wrap, parse_args, resume_state, run_training, worker_setup
from lighttrack.train.config import PretrainConfig


def worker(loop_config: dict) -> None:
    from lighttrack.models import ClassSupernet
    from lighttrack.train.class_data import class_dataset
    from lighttrack.train.common import make_loader
    from lighttrack.train.pretrain import train_backbone_supernet

    cfg, dist = worker_setup(PretrainConfig, loop_config)
    model = ClassSupernet(cfg.model.num_classes, cfg.model.dropout)
    size = cfg.model.image_size
    train = make_loader(class_dataset(cfg.data_root, "train", size, train=True), cfg.batch_size, dist,
                        shuffle=True, workers=cfg.run.loader_workers, seed=cfg.run.seed)
    recal = make_loader(class_dataset(cfg.data_root, "train", size, train=True), cfg.batch_size,
                        type(dist)(), shuffle=True, seed=cfg.run.seed + 1)
    val = make_loader(class_dataset(cfg.data_root, "val", size, train=False), cfg.batch_size, type(dist)(),
                      shuffle=False, drop_last=False)
    state = resume_state(loop_config)
    report = Reporter(loop_config, cfg.run.log_every, epochs=cfg.epochs)
    train_backbone_supernet(model, train, val if dist.is_main else None, cfg, report, dist, ddp_wrap, state,
                            recal_loader=recal)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], "configs/pretrain.yaml", argv)
    return run_training(args, PretrainConfig, "pretrain", worker)


if __name__ == "__main__":
    from ray_jobs.common import run_main
    run_main(lambda argv: (main(argv), 0)[1])
