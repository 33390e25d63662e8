"""Phase 3: evolutionary architecture search on a trained supernet (Ray Tune + Nevergrad).

    python -m ray_jobs.search --supernet RUN_ID_OR_PATH --flops-max 600M --params-max 2M \
        [--budget 600M,2M --budget 800M,3M] [--latency-max MS --latency-table table.json] \
        [--config configs/search_tiny.yaml] [--cache PATH_OR_URI] [--name NAME]

No training happens here. Evaluator actors load the supernet once each; Tune trials call
them. Every result goes to the evaluation cache, so re-running the same ``--name`` resumes
an interrupted search without losing or repeating an evaluation, and a later search on
the same supernet starts from everything evaluated before. Several ``--budget`` run one
after another in one MLflow run, sharing the evaluators and the cache.
"""
from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from ray_jobs import common
from ray_jobs.capacity import cluster_capacity, storage_path_check, use_gpu
from lighttrack.checkpoint import require_phase
from lighttrack.config import check_inputs
from lighttrack.commands.argtypes import positive_float, positive_int

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(p)
    p.add_argument("--supernet", help="phase-2 MLflow run id or checkpoint path (config key `supernet`)")
    p.add_argument("--flops-max", help="MACs budget, e.g. 600M (fvcore total, search branch)")
    p.add_argument("--params-max", help="parameter budget, e.g. 2M")
    p.add_argument("--budget", action="append", default=[], metavar="MACS,PARAMS[,MSms]",
                   help="a budget; repeat for several (one search, one cache, one best each)")
    p.add_argument("--latency-max", type=positive_float, help="latency budget in ms (needs --latency-table)")
    p.add_argument("--latency-table", help="table from `lighttrack arch profile`")
    p.add_argument("--cache", help="evaluation cache dir or URI (default: beside the supernet)")
    p.add_argument("--workers", type=positive_int, help="evaluator actors (= concurrent trials)")
    return p


def resolve_budgets(args, cfg):
    from lighttrack.search.budget import Budget, BudgetError

    texts = list(cfg.budgets) + list(args.budget)
    if args.flops_max or args.params_max:
        if not (args.flops_max and args.params_max):
            raise BudgetError("give both --flops-max and --params-max (or use --budget MACS,PARAMS)")
        texts.insert(0, f"{args.flops_max},{args.params_max}")
    if not texts:
        raise BudgetError("no budget: give --flops-max/--params-max or --budget MACS,PARAMS")
    budgets = [Budget.parse(t, args.latency_max) for t in texts]
    if len({b.label for b in budgets}) != len(budgets):
        raise BudgetError(f"the same budget was given twice: {[b.label for b in budgets]}")
    return budgets


def _cache_location(cfg, supernet, storage: str | None, multi_node: bool) -> tuple[str, str | None]:
    """(cache location every evaluator can open, supernet run id to upload the cache to at the end).

    The evaluators write rows wherever they run and the driver reads them, so on a cluster
    that has or can have a second node the cache must be a URI (``s3://``, ``gs://``,
    ``file://`` of a shared mount): the supernet run's artifact store when it is one,
    else ``<storage>/eval_cache``. A proxied MLflow store (``mlflow-artifacts:``) cannot
    be written by path: the cache then lives at the storage path, seeded from the
    supernet run's ``eval_cache`` artifact, and is uploaded back to it when the search ends.
    """
    from lighttrack.data import fs

    explicit = cfg.cache
    if explicit:
        if multi_node and not fs.is_uri(explicit):
            raise common.OpsError(f"--cache {explicit!r} is a local path, but the evaluators may run on other "
                                  "nodes: give a URI every node sees (s3://..., gs://..., file:///mnt/shared/...)")
        return explicit, None
    if supernet.run_id is None:
        if not multi_node:
            return str(Path(supernet.path).parent / "eval_cache"), None
        return fs.join(storage, "eval_cache"), None
    import mlflow

    art = mlflow.get_run(supernet.run_id).info.artifact_uri
    if art.startswith(("s3://", "gs://")) or (not multi_node and art.startswith(("file://", "/"))):
        return art.rstrip("/") + "/eval_cache", None
    if storage:
        location = fs.join(storage, "eval_cache", supernet.run_id)
    else:  # one node, Ray's default storage: a local folder is seen by every evaluator
        location = str(Path(tempfile.mkdtemp(prefix="lt-cache-")) / "eval_cache")
    _seed_cache(supernet.run_id, location)
    return location, supernet.run_id


def _seed_cache(run_id: str, location: str) -> None:
    """Copy the part files of run ``run_id``'s ``eval_cache`` artifact into ``location``."""
    import mlflow

    from lighttrack.search.cache import EvalCache

    with tempfile.TemporaryDirectory(prefix="lt-cache-seed-") as tmp:
        try:
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="eval_cache", dst_path=tmp)
        except Exception:  # no cache yet  # noqa: BLE001
            return
        copied = EvalCache(str(Path(tmp) / "eval_cache")).copy_parts(location)
    print(f"search: evaluation cache {location}: {copied} part file(s) from run {run_id}", flush=True)


def _upload_cache(location: str, run_id: str) -> None:
    """Log the part files at ``location`` as run ``run_id``'s ``eval_cache`` artifact."""
    import mlflow

    from lighttrack.search.cache import EvalCache

    with tempfile.TemporaryDirectory(prefix="lt-cache-up-") as tmp:
        EvalCache(location).copy_parts(tmp)
        mlflow.tracking.MlflowClient().log_artifacts(run_id, tmp, "eval_cache")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from lighttrack.search.budget import CostModel, check_possible
    from lighttrack.search.config import SearchConfig

    cfg = common.load_config(SearchConfig, args, {"supernet": "supernet", "workers": "workers",
                                                  "latency_table": "latency_table", "cache": "cache"})
    if not cfg.supernet:
        raise common.OpsError("no supernet: give --supernet RUN_ID_OR_PATH")
    budgets = resolve_budgets(args, cfg)
    latency = None
    if cfg.latency_table:
        from lighttrack.search.latency import LatencyTable
        latency = LatencyTable.load(cfg.latency_table)
    costs = CostModel(latency=latency)
    for b in budgets:  # an impossible budget stops here, before anything starts
        check_possible(b, costs)
    check_inputs(cfg)  # the validation and recalibration splits, the tracker file

    common.setup_mlflow(args.experiment)
    supernet = common.resolve_run_input(cfg.supernet, "supernet", "checkpoint/checkpoint.pt")
    ckpt = supernet.path if supernet.path.is_file() else supernet.path / "checkpoint.pt"
    require_phase(ckpt, "supernet", "--supernet")  # its keys only: a phase-1 file or a truncated one stops here
    common.connect_ray(args.address)
    capacity = cluster_capacity()
    storage = storage_path_check(args.storage_path, capacity.max_nodes)
    cache_location, upload_to = _cache_location(cfg, supernet, storage, capacity.max_nodes > 1)
    cfg.cache = cache_location
    cfg.budgets = [b.label for b in budgets]  # what runs, --budget/--flops-max included, as MLflow params
    name = args.name or f"search-{'+'.join(b.label for b in budgets)}-seed{cfg.seed}"
    gpus = cfg.gpus_per_worker if use_gpu(args.use_gpu, capacity) else 0
    capacity.check_fits("search workers (evaluators)", cfg.workers, cfg.cpus_per_worker, gpus)

    import ray
    # The evaluators may run on any node: the weights travel through the object store
    # (one copy, fetched by each actor's node), never as a path of the driver's disk.
    weights = ray.put(ckpt.read_bytes())
    parent = {common.PARENT_TAG: supernet.run_id} if supernet.run_id else {}
    run_id, status = common.open_run("search", name, args.experiment, cfg, parent, storage)
    if status == "done":  # every result is in that run; a new name (or config) searches again
        return 0
    with common.active_run(run_id):
        import mlflow

        mlflow.set_tags({"lighttrack.supernet": cfg.supernet,
                         "lighttrack.optimizer": cfg.optimizer.name,
                         "lighttrack.budgets": ";".join(b.label for b in budgets)})
        mlflow.log_params({"run.workers": cfg.workers, "run.gpus_per_evaluator": gpus,
                           "run.cpus_per_evaluator": cfg.cpus_per_worker, "run.storage": storage,
                           "run.latency_max_ms": args.latency_max})
        if latency is not None:  # which table, runtime and machine the latency budgets were judged by
            m = latency.machine
            mlflow.log_params({"latency.table": cfg.latency_table, "latency.runtime": latency.backend,
                               "latency.threads": latency.threads, "latency.machine": m.get("hostname"),
                               "latency.cpu": m.get("cpu"), "latency.runtime_version": m.get(latency.backend)})
        try:
            results = run_search(cfg, budgets, costs, weights, cache_location, name, storage, gpus)
        finally:
            if upload_to:
                _upload_cache(cache_location, upload_to)
        bests = log_results(results, budgets, name)
        if latency is not None and bests:
            check_found_latency(latency, bests)
    return 0


def check_found_latency(table, bests: list[dict]) -> None:
    """Each budget's found architecture timed as the latency table was (runtime, threads),
    beside the table's estimate: MLflow metrics ``latency_measured_ms|estimate_ms|error/<budget>``.
    Only on the table's own device; elsewhere a tag says where to run the check."""
    import mlflow

    from lighttrack.arch import parse
    from lighttrack.search.profiler import check_latency, latency_line, not_here

    why = not_here(table)
    if why:
        hint = f"not run ({why}): run `lighttrack arch latency --table TABLE --arch ARCH` on the table's device"
        mlflow.set_tag("lighttrack.latency_check", hint)
        print(f"search: latency check {hint}", flush=True)
        return
    for best, r in zip(bests, check_latency(table, [parse(b["arch"]) for b in bests])):
        label = best["budget"]
        mlflow.log_metrics({f"latency_measured_ms/{label}": r["measured_ms"],
                            f"latency_estimate_ms/{label}": r["estimate_ms"], f"latency_error/{label}": r["error"]})
        print(f"search {label}: found architecture {latency_line(r, table)}", flush=True)
    mlflow.set_tag("lighttrack.latency_check", "run on the table's device")


def run_search(cfg, budgets, costs, weights, cache_location, name, storage=None, gpus: float = 0) -> dict:
    import mlflow
    import ray
    from ray import tune

    from lighttrack.search.budget import BudgetCheck
    from lighttrack.search.cache import EvalCache
    from lighttrack.search.fidelity import rungs
    from lighttrack.search.searcher import open_search
    from ray_jobs.search_actors import Evaluator, LightTrackSearcher, trial, wait_ready

    t_start = time.time()
    actors = [Evaluator.options(num_cpus=cfg.cpus_per_worker, num_gpus=gpus).remote(
        weights, cfg.eval, cache_location, costs, cfg.threads) for _ in range(cfg.workers)]
    first = wait_ready(actors)
    sid, eid = first["supernet_id"], first["settings_id"]
    search_space = first["space"]  # the supernet's: 'paper', or 'wide' (stride-8 outputs too)
    total, f = first["sequences"], cfg.fidelity  # validation sequences; successive halving over them
    rung_sizes = rungs(total, f.min_sequences, f.reduction) if f.enabled else (None,)
    if f.enabled:
        print(f"search: successive halving over {total} validation sequences, rungs {rung_sizes}, "
              f"the best 1/{f.reduction} going on at each", flush=True)
    mlflow.set_tags({"lighttrack.supernet_id": sid, "lighttrack.settings_id": eid,
                     "lighttrack.space": search_space,
                     "lighttrack.cache": cache_location, "lighttrack.gpus_per_evaluator": gpus})
    cache = EvalCache(cache_location)
    step = {"n": 0}
    m = cfg.eval.metric  # the fitness: ao | eao
    out = {"budgets": {}, "supernet_id": sid, "settings_id": eid, "metric": m}

    for b in budgets:
        rows = cache.rows(sid, eid)
        source = open_search(cfg, BudgetCheck(b, costs), rows, name, b.label, search_space,
                             cache.rows(sid, eid, partial=True), total)
        seeded, done, max_eval = source.stats.seeded, source.done, source.max_evaluations
        print(f"search {b.label}: {len(rows)} cached results, {seeded} fit and seeded the optimizer, "
              f"{done} done earlier by this search; up to {max_eval - done} more", flush=True)
        best = {"fitness": -1.0}
        seen = {"n": 0, "t0": time.time(), "todo": max_eval - done}

        def on_result(h, label=b.label, best=best, seen=seen):
            step["n"] += 1
            seen["n"] += 1
            partial = h["source"] == "partial"  # stopped at a rung: no whole-split figure
            if not partial and h["fitness"] > best["fitness"]:
                best.update(h)
            n, todo = seen["n"], seen["todo"]
            eta = (time.time() - seen["t0"]) / n * max(0, todo - n)
            what = f"stopped after {h['sequences']} of {total} sequences at {m.upper()}" if partial else m.upper()
            print(f"search {label}: {n}/{todo} candidates, this one {what} {h['fitness']:.4f}"
                  f"{' (cache)' if h['source'] == 'cache' else ''}, best {best['fitness']:.4f}, "
                  f"ETA {dt.timedelta(seconds=round(eta))}", flush=True)
            # Rows cached before the baseline existed have none (None).
            base = h["baseline_fitness"]
            key = f"partial_{m}" if partial else m
            baseline = {} if base is None or partial else {f"baseline_{m}/{label}": base}
            mlflow.log_metrics({f"{key}/{label}": h["fitness"], f"best_{m}/{label}": best["fitness"], **baseline,
                                "cache_answer": float(h["source"] == "cache")}, step=step["n"])

        searcher = LightTrackSearcher(source, cfg.workers, on_result)
        t0 = time.time()
        halving = None
        if len(rung_sizes) > 1:  # Tune's ASHA decides at each rung, sequences seen as its time
            from ray.tune.schedulers import ASHAScheduler

            halving = ASHAScheduler(time_attr="sequences_seen", metric="fitness", mode="max", max_t=total,
                                    grace_period=f.min_sequences, reduction_factor=f.reduction)
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trial, evaluators=actors, search=name, budget=b.label,
                                                     rungs=rung_sizes, total=total),
                                {"cpu": 0.01}),  # the work runs on the evaluators
            # Room for retried candidates; the searcher ends the search when it has enough.
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=halving,
                                        num_samples=max(1, max_eval - done) * 2 + cfg.workers,
                                        max_concurrent_trials=cfg.workers, reuse_actors=True),
            # A trial stub lost with its node is run again; the evaluator's cache check then
            # answers it if its candidate was finished before.
            run_config=tune.RunConfig(name=f"{name}-{b.label}", storage_path=storage, verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=3)))
        if not source.finished:
            tuner.fit()
        s = source.stats.as_dict()
        saved = log_savings(source, b.label, total)
        print(f"search {b.label}: {s['trials']} trials, {s['cache_hits']} cache answers, "
              f"{s['infeasible']} infeasible rejected, {time.time() - t0:.1f} s; whole-split evaluations saved: "
              + ", ".join(f"{k} {v:.1f}" for k, v in saved.items()), flush=True)
        out["budgets"][b.label] = {"stats": s, "seconds": time.time() - t0, "seeded": seeded,
                                   "history": list(source.history)}
    infos = []
    for a in actors:  # an evaluator lost with its node has nothing to report
        try:  # info() first writes rows a store outage held back: give it the cache's patience
            infos.append(ray.get(a.info.remote(), timeout=cache.patience_s + 60))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
    unwritten = sum(i["unwritten"] for i in infos)
    if unwritten:
        print(f"search: WARNING {unwritten} evaluated row(s) could not be written to the cache {cache_location}; "
              "they are in this run's results but a later search will evaluate them again", flush=True)
    out["evaluators_lost"] = len(actors) - len(infos)
    out["supernet_loads"] = sum(i["loads"] for i in infos)
    out["evaluator_answers_from_cache"] = sum(i["cache_answers"] for i in infos)
    out["rows"] = cache.rows(sid, eid)
    if costs.latency is not None:  # latency is this search's table's estimate, whoever evaluated the row
        from lighttrack.arch import parse
        for r in out["rows"]:
            r["latency_ms"] = costs(parse(r["arch"])).latency_ms
    out["seconds"] = time.time() - t_start
    for a in actors:
        ray.kill(a)
    return out


def log_savings(source, label: str, total: int) -> dict[str, float]:
    """MLflow metrics of what each mechanism saved this budget, in whole-split evaluations
    (``saved_<mechanism>/<budget>``), and the accuracy predictor's tau at each refit on the
    results that came after the fit before (``predictor_tau/<budget>``, step: results)."""
    import mlflow

    s = source.stats
    saved = {"cache": float(s.cache_hits), "halving": s.trials - s.sequences / max(1, total),
             "predictor": float(s.screened)}
    mlflow.log_metrics({f"saved_{k}/{label}": v for k, v in saved.items()}
                       | {f"stopped/{label}": s.stopped})
    for rows, tau in getattr(source.screen, "taus", ()):
        mlflow.log_metric(f"predictor_tau/{label}", tau, step=rows)
    return saved


def log_results(res: dict, budgets, name: str) -> list[dict]:
    """Print and log each budget's best; returns them (best first)."""
    import mlflow

    from lighttrack.search.report import write_report

    m = res["metric"]
    out = Path(tempfile.mkdtemp(prefix="lt-search-out-"))
    bests = write_report(res, budgets, name, out)
    for best in bests:
        base = best[f"baseline_{m}"]
        print(f"search {best['budget']}: best {m.upper()} {best[m]:.4f} {best['arch']} ({best['macs'] / 1e6:.1f}M "
              f"MACs, {best['params'] / 1e6:.3f}M params); a tracker that stays at the first box: "
              f"{'unknown' if base is None else f'{base:.4f}'}", flush=True)
    if bests:
        mlflow.set_tag(common.ARCH_TAG, bests[0]["arch"])
        if bests[0][f"baseline_{m}"] is not None:
            mlflow.log_metric(f"baseline_{m}", bests[0][f"baseline_{m}"])
        mlflow.log_metrics({f"best_{m}": bests[0][m], "best_macs": bests[0]["macs"],
                            "best_params": bests[0]["params"]})
    mlflow.log_artifacts(str(out))
    trials = sum(v["stats"]["trials"] for v in res["budgets"].values())
    mine = sum(r["search"] == name for r in res["rows"])
    mlflow.log_metrics({"trials": mine, "trials_this_run": trials,
                        "cache_answers": sum(v["stats"]["cache_hits"] for v in res["budgets"].values()),
                        "supernet_loads": res["supernet_loads"], "evaluators_lost": res["evaluators_lost"],
                        "search_seconds": res["seconds"]})
    print(f"search: {trials} trials this run, {mine} evaluations by this search in total, "
          f"supernet loaded {res['supernet_loads']} time(s), {res['seconds']:.1f} s", flush=True)
    return bests


if __name__ == "__main__":
    common.run_main(main)
