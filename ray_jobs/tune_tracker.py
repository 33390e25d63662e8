"""Tune the tracker's penalty_k, window_influence and lr for one architecture with Ray Tune.

    python -m ray_jobs.tune_tracker --dataset DATA --split val --arch lighttrack-mobile \\
        --checkpoint ckpt.pt --num-samples 32 --out configs/tracker_mobile.yaml --name tune-mobile

Each trial tracks the whole split with ``lighttrack.tracker.evaluation.evaluate_split``
(fitness: GOT-10k AO) under one setting drawn by Nevergrad; the weights travel once
through the object store. The driver logs every trial to MLflow (parent run with the
best values, one nested run per trial) and writes the best TrackerParams as YAML to
``--out`` (load it with ``lighttrack evaluate --tracker FILE``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from lighttrack.data.fs import absolute
from ray_jobs.common import (ARCH_TAG, active_run, add_common_args, connect_ray, load_config, open_run, run_main,
                             setup_mlflow)
from lighttrack.commands.argtypes import count, positive_int
from lighttrack.config import ConfigError
from lighttrack.tracker.tune import SPACE, TuneTrackerConfig, score_setting

def trial(config: dict, **kwargs) -> None:
    """One setting: track the split, report AO (runs on a Ray worker)."""
    from ray import tune

    scores = score_setting(config, **kwargs)
    tune.report({k: scores[k] for k in ("ao", "baseline_ao", "sr50", "sr75", "fps") if k in scores})


FLAGS = {"dataset": "dataset", "split": "split", "max_sequences": "max_sequences", "arch": "arch",
         "checkpoint": "checkpoint", "tracker": "tracker", "num_samples": "num_samples", "out": "out", "seed": "seed"}


def main(argv: Sequence[str] | None = None) -> int:
    p = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--dataset", help="dataset root (GOT-10k layout or the embedded one)")
    p.add_argument("--split")
    p.add_argument("--max-sequences", type=count)
    p.add_argument("--arch", help="preset name or architecture string")
    p.add_argument("--checkpoint", help="local weights file (none: fresh weights, for smoke tests)")
    p.add_argument("--tracker", help="starting preset/YAML for the untuned fields (default vot2019)")
    p.add_argument("--num-samples", type=positive_int, help="settings tried (default 16)")
    p.add_argument("--out", help="YAML file that receives the best TrackerParams")
    p.add_argument("--seed", type=count)
    args = p.parse_args(argv)
    cfg = load_config(TuneTrackerConfig, args, FLAGS)
    for key in ("dataset", "arch", "out"):
        if not getattr(cfg, key):
            raise ConfigError(f"no {key}: give --{key} (or --set {key}=...)")

    from lighttrack.arch import resolve
    from lighttrack.config import to_dict
    from lighttrack.tracker.evaluation import open_split, read_split
    from lighttrack.tracker.params import load_params
    from lighttrack.tracker.runtime import load_torch_net

    arch = resolve(cfg.arch)
    base = to_dict(load_params(cfg.tracker))
    dataset_args = {"root": absolute(cfg.dataset), "split": cfg.split, "max_sequences": cfg.max_sequences}
    read_split(open_split(**dataset_args))  # a bad split (any sequence, any first box) fails here, before Ray
    state = load_torch_net(arch, cfg.checkpoint or None).state_dict()
    setup_mlflow(args.experiment)
    name = args.name or "tune_tracker"
    run_id, status = open_run("tune", name, args.experiment, cfg, {ARCH_TAG: str(arch)}, args.storage_path)
    if status == "done":
        return 0
    connect_ray(args.address)
    with active_run(run_id):
        best, results = _tune(cfg, name, args, trial_args={"state": state, "arch_text": str(arch),
                                                           "dataset_args": dataset_args, "base": base})
        tuned = {**base, **{k: float(best.config[k]) for k in SPACE}}
        _log(cfg, tuned, best, results)
    print(f"best AO {best.metrics['ao']:.4f} (a tracker that stays at the first box: "
          f"{best.metrics['baseline_ao']:.4f}) with {json.dumps({k: tuned[k] for k in SPACE})} -> {cfg.out}")
    return 0


def _tune(cfg: TuneTrackerConfig, name: str, args: argparse.Namespace, trial_args: dict):
    """Ray Tune over :data:`SPACE` from the preset's values; (best result, all results)."""
    import nevergrad as ng
    import numpy as np
    from ray import tune
    from ray.tune.search.nevergrad import NevergradSearch

    start = {k: trial_args["base"][k] for k in SPACE}  # the preset is the first point tried
    np.random.seed(cfg.seed)  # the searcher runs here; Nevergrad draws its parametrization's seed from NumPy
    searcher = NevergradSearch(optimizer=ng.optimizers.OnePlusOne, points_to_evaluate=[start])
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trial, **trial_args), {"cpu": 1}),
        param_space={k: tune.uniform(lo, hi) for k, (lo, hi) in SPACE.items()},
        tune_config=tune.TuneConfig(metric="ao", mode="max", search_alg=searcher,
                                    num_samples=cfg.num_samples, max_concurrent_trials=args.num_workers),
        run_config=tune.RunConfig(name=name, storage_path=args.storage_path),
    )
    results = tuner.fit()
    best = results.get_best_result()
    if best.metrics is None or "ao" not in best.metrics:
        raise RuntimeError(f"no trial finished: {[str(r.error) for r in results if r.error]}")
    return best, results


def _log(cfg: TuneTrackerConfig, tuned: dict, best, results) -> None:
    """The best TrackerParams to ``cfg.out`` and, into the active run, the best values and
    every trial (a nested run each)."""
    import mlflow
    import yaml

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(tuned, sort_keys=False))
    mlflow.log_params({f"best.{k}": v for k, v in tuned.items() if k in SPACE})  # the arch: its tag
    mlflow.log_metrics({f"best_{k}": float(v) for k, v in best.metrics.items() if k in ("ao", "sr50", "sr75")})
    mlflow.log_metric("baseline_ao", float(best.metrics["baseline_ao"]))  # stays at the first box
    trials = []
    for r in results:
        if r.metrics and "ao" in r.metrics:
            row = {**{k: float(r.config[k]) for k in SPACE}, "ao": float(r.metrics["ao"])}
            trials.append(row)
            with mlflow.start_run(run_name=f"trial-{len(trials)}", nested=True):
                mlflow.log_params({k: row[k] for k in SPACE})
                mlflow.log_metric("ao", row["ao"])
    mlflow.log_text(json.dumps(trials, indent=2), "trials.json")
    mlflow.log_artifact(str(out))


if __name__ == "__main__":
    run_main(main)
