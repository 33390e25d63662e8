"""Phase 4 as a Ray Train job: retrain the found backbone on ImageNet, then fine-tune
backbone + head of the found architecture on tracking pairs (one job, one MLflow run).

    python -m ray_jobs.retrain --config configs/retrain_tiny.yaml --name p4 --set arch=<search run id | best_arch.json | arch string>
    ray job submit --working-dir . -- python -m ray_jobs.retrain --config ... --name p4

``best_arch.json`` holds ``{"arch": "<arch string>", ...}``; the phase-2 supernet is taken
from ``--set supernet=...`` or else from the JSON's ``supernet`` / ``supernet_run`` entry or
the search run's ``lighttrack.parent_run`` tag.
"""
from __future__ import annotations

import json
from pathlib import Path

from ray_jobs.common import PARENT_TAG, resolve_run_input, tracking_uri
from ray_jobs.train_job import Reporter, ddp_wrap, input_state, parse_args, resume_state, run_training, worker_setup
from lighttrack.train.config import RetrainConfig


def resolve_arch(ref: str, supernet: str = "") -> tuple[str, str, dict[str, str]]:
    """(arch string, supernet reference, lineage tags) from a search run id, a JSON path or a string."""
    from lighttrack.arch import ArchError, resolve
    if not ref:
        raise SystemExit("error: no architecture: --set arch=<search run id | best_arch.json | arch string>")
    tags: dict[str, str] = {}
    p = Path(ref)
    if p.is_dir():
        p = p / "best_arch.json"
    info: dict = {}
    if p.is_file():
        info = json.loads(p.read_text())
        tags["lighttrack.search_path"] = str(p.resolve())
    else:
        try:
            return str(resolve(ref)), supernet, tags  # an arch string or preset
        except ArchError:
            pass
        if "/" in ref or ref.endswith(".json"):
            raise FileNotFoundError(f"arch: {ref} does not exist (expected a search's best_arch.json, "
                                    "an architecture string, a preset or a search run id)")
        import mlflow
        mlflow.set_tracking_uri(tracking_uri())
        search = resolve_run_input(ref, "search", "best_arch.json")  # a finished search run, or a clear error
        info = json.loads(search.path.read_text())
        tags[PARENT_TAG] = ref
        supernet = supernet or search.tags.get(PARENT_TAG, "")
    if "arch" not in info:
        raise SystemExit(f"error: {p}: best_arch.json has no 'arch' entry (keys: {sorted(info)})")
    supernet = supernet or str(info.get("supernet") or info.get("supernet_run") or "")
    return str(resolve(info["arch"])), supernet, tags


def worker(loop_config: dict) -> None:
    from lighttrack.arch import parse
    from lighttrack.models import TrackSupernet
    from lighttrack.train.retrain import retrain_tracker

    cfg, dist = worker_setup(RetrainConfig, loop_config)
    supernet = None
    if loop_config["supernet"]:
        sn_state = input_state(loop_config, "supernet")["model"]
        supernet = TrackSupernet.for_state_dict(sn_state)
        supernet.load_state_dict(sn_state)
    first = "retrain" if cfg.retrain.enabled else "finetune"  # TEST ONLY fault injection: the first stage

    def reporter(stage: str, epochs: int) -> Reporter:
        return Reporter(loop_config, cfg.run.log_every, prefix=f"{stage}/", epochs=epochs, fault=stage == first)

    retrain_tracker(cfg, parse(loop_config["arch"]), supernet, reporter, dist, ddp_wrap, resume_state(loop_config))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], "configs/retrain.yaml", argv)
    from lighttrack.config import load
    cfg = load(RetrainConfig, args.config, args.overrides)
    arch, supernet, tags = resolve_arch(cfg.arch, cfg.supernet)
    needs = (cfg.retrain.enabled and cfg.retrain.init == "supernet") or cfg.finetune.head_init == "supernet"
    if needs and not supernet:
        raise SystemExit("error: the config starts from the supernet; give --set supernet=<phase-2 run id or path>")
    tags["lighttrack.arch"] = arch
    loop_extra = {"arch": arch, "supernet": supernet}
    return run_training(args, RetrainConfig, "retrain", lambda loop_config: worker(loop_config | loop_extra),
                        lambda c: tags, inputs=lambda c: {"supernet": (supernet, "supernet")} if supernet else {})


if __name__ == "__main__":
    from ray_jobs.common import run_main
    run_main(lambda argv: (main(argv), 0)[1])
