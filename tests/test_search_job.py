"""ray_jobs/search.py end to end on the embedded data (real Ray head, real MLflow store).

One supernet checkpoint and one evaluation cache for the module, three driver runs:

1. a search killed mid-way and re-run under the same name: neither loses nor repeats an
   evaluation;
2. a second search on the same supernet with two tighter budgets in one run
   (``--budget A --budget B``): it is seeded from the cache, evaluates no architecture
   already there, and reports one best architecture per budget, each inside its budget
   when recounted with fvcore.

And two searches submitted together on one fresh cache (two budgets): every row kept,
nothing evaluated again that the other search had already written.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from lighttrack.arch import parse, resolve
from lighttrack.models import TrackSupernet
from lighttrack.models.complexity import count
from lighttrack.search.budget import Budget
from lighttrack.search.cache import EvalCache
from tests.home import EMBEDDED

ROOT = Path(__file__).resolve().parents[1]
SYNTH = EMBEDDED / "got10k"
FIRST, N_FIRST = "600M,2M", 4  # the interrupted search: budget, evaluations
TIGHT, N_TIGHT = ("450M,1.5M", "500M,1.8M"), 3  # the second search: budgets, evaluations each
pytestmark = [pytest.mark.slow, pytest.mark.services]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ray_cluster):
    if not (SYNTH / "val").is_dir():
        pytest.skip("embedded data missing: run `lighttrack data synth --out data/synth`")
    tmp = tmp_path_factory.mktemp("search")
    torch.manual_seed(0)
    torch.save({"model": TrackSupernet().state_dict()}, tmp / "checkpoint.pt")
    env = {**ray_cluster.client_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "PYTHONPATH": str(ROOT)}
    return tmp, env, ray_cluster.address


def _cmd(tmp: Path, address: str, name: str, budgets: tuple[str, ...], n: int, cache: str = "cache") -> list[str]:
    cmd = [sys.executable, "-m", "ray_jobs.search", "--supernet", str(tmp / "checkpoint.pt"),
           "--config", str(ROOT / "configs/search_micro.yaml"), "--cache", str(tmp / cache),
           "--name", name, "--address", address, "--storage-path", str(tmp / "ray"),
           "--set", f"optimizer.evaluations={n}", "--set", f"eval.val_root={SYNTH}",
           "--set", f"eval.recalibrate_root={SYNTH}", "--set", "eval.val_frames=12"]  # ~1 s per evaluation: time to interrupt
    for b in budgets:
        cmd += ["--budget", b]
    return cmd


def _run(cmd: list[str], env: dict, cwd: Path) -> str:
    # MLflow artifacts land beside the sqlite store: tmp/mlartifacts (ray_jobs.common.setup_mlflow).
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def _rows(tmp: Path, search: str | None = None) -> list[dict]:
    return [r for r in EvalCache(str(tmp / "cache")).rows() if search is None or r["search"] == search]


_COUNTS: dict[str, tuple[int, int]] = {}


def _fvcore(arch: str) -> tuple[int, int]:
    """(MACs, params) recounted with fvcore (memoised: ~1 s each)."""
    if arch not in _COUNTS:
        c = count(parse(arch))
        _COUNTS[arch] = (c.macs, c.params)
    return _COUNTS[arch]


@pytest.fixture(scope="module")
def first(setup):
    """The first search, SIGKILLed after its first evaluation and re-run under the same name."""
    tmp, env, address = setup
    cmd = _cmd(tmp, address, "first", (FIRST,), N_FIRST)
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 400
    while not _rows(tmp, "first") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver we started, mid-search
    proc.wait()
    before = {r["arch"]: r["finished"] for r in _rows(tmp, "first")}
    out = _run(cmd, env, tmp)
    return before, out


def test_interrupted_search_resumes_without_loss_or_repeat(setup, first):
    tmp, _, _ = setup
    before, out = first
    assert 1 <= len(before) < N_FIRST, f"interrupt came too late: {len(before)} evaluations"
    after = _rows(tmp, "first")
    ran = int(re.search(r"(\d+) trials this run", out).group(1))
    print(f"interrupted after {len(before)} evaluations; resumed run ran {ran} trials; "
          f"{len(after)} evaluations in total")
    assert len(after) == N_FIRST and len({r["arch"] for r in after}) == N_FIRST  # nothing repeated
    assert all(before[a] == f for a, f in ((r["arch"], r["finished"]) for r in after) if a in before)
    assert set(before) <= {r["arch"] for r in after}  # nothing lost
    assert ran == N_FIRST - len(before)  # an in-flight one re-run is answered by the cache, not run
    assert "supernet loaded 1 time(s)" in out  # one evaluator, one load


def test_tighter_budgets_in_one_run_reuse_the_cache(setup, first):
    tmp, env, address = setup
    cached = {r["arch"] for r in _rows(tmp)}
    budgets = [Budget.parse(b) for b in TIGHT]
    t0 = time.time()
    out = _run(_cmd(tmp, address, "second", TIGHT, N_TIGHT), env, tmp)
    seconds = time.time() - t0
    rows = _rows(tmp)
    new = [r for r in rows if r["search"] == "second"]
    assert not {r["arch"] for r in new} & cached, "an architecture already in the cache was evaluated again"
    assert len({r["arch"] for r in rows}) == len(rows)  # no architecture evaluated twice, ever
    for i, b in enumerate(budgets):
        # Seeded with every result in the cache when this budget started that fits it
        # (for the second budget: the first search's and the first budget's results).
        known = cached | {r["arch"] for r in new if r["budget"] in [x.label for x in budgets[:i]]}
        fits = [a for a in known if b.fits(*_fvcore(a))]
        m = re.search(rf"search {re.escape(b.label)}: (\d+) cached results, (\d+) fit and seeded", out)
        s = re.search(rf"search {re.escape(b.label)}: (\d+) trials, (\d+) cache answers", out)
        mine = [r for r in new if r["budget"] == b.label]
        print(f"budget {b.label}: {m.group(1)} cached, {m.group(2)} seeded ({len(fits)} fit), "
              f"{s.group(1)} new evaluations, {s.group(2)} cache answers")
        assert int(m.group(2)) == len(fits)
        assert int(s.group(1)) == len(mine) and int(s.group(1)) + int(s.group(2)) == N_TIGHT
        # One best per budget, inside it when recounted with fvcore, logged as an artifact.
        best = re.search(rf"search {re.escape(b.label)}: best AO [0-9.]+ (\S+) ", out).group(1)
        assert b.fits(*_fvcore(best)), f"best of {b.label} outside it: {_fvcore(best)}"
        assert list(tmp.glob(f"mlartifacts/**/best_arch_{b.label}.json")), b.label
    print(f"second search ({' + '.join(TIGHT)}): {seconds:.1f} s")
    assert list(tmp.glob("mlartifacts/**/pareto_front.png"))


def test_a_search_by_vot_eao_scores_under_settings_of_its_own(setup, first):
    """``eval.metric=eao``: candidates are scored by the VOT experiment on a VOT folder, their
    rows keep apart from the AO rows of the same supernet, and the best is reported by EAO."""
    import json

    from lighttrack.data.synth_vot import write_vot

    tmp, env, address = setup
    write_vot(tmp / "vot", seed=3, sequences=1, frames=(60, 60))
    ao_settings = {r["settings_id"] for r in _rows(tmp)}
    out = _run(_cmd(tmp, address, "vot", (FIRST,), 2) + [
        "--set", "eval.metric=eao", "--set", f"eval.val_root={tmp / 'vot'}", "--set", "eval.val_frames=0"], env, tmp)
    label = Budget.parse(FIRST).label
    assert re.search(rf"search {label}: 0 cached results", out), out[-2000:]  # AO rows not told
    rows = _rows(tmp, "vot")
    assert len(rows) == 2 and not {r["settings_id"] for r in rows} & ao_settings
    for r in rows:
        assert r["metric"] == "eao" and r["fitness"] == r["eao"] and r["ao"] is None
        assert r["baseline_fitness"] == r["baseline_eao"] is not None
    best = re.search(rf"search {label}: best EAO ([0-9.]+) (\S+) ", out)
    assert best and float(best.group(1)) == pytest.approx(max(r["eao"] for r in rows), abs=1e-4)
    card = [json.loads(p.read_text()) for p in tmp.glob("mlartifacts/**/best_arch.json")
            if json.loads(p.read_text()).get("metric") == "eao"]
    assert card and {"eao", "baseline_eao", "accuracy", "failures", "beats_baseline"} <= set(card[0])


def test_two_searches_at_once_on_one_cache_keep_every_row_and_repeat_none(setup, mlflow_server):
    """Two drivers, two budgets, one cache folder, the second started as the first writes its
    first row (the same optimizer seed, so they ask for much the same candidates). A key
    evaluated by both is allowed only where the second evaluation began before the first
    one's row had landed (both were in flight)."""
    import pyarrow.parquet as pq

    tmp, env, address = setup
    env = {**env, "MLFLOW_TRACKING_URI": mlflow_server.uri}  # one server for both, as users share one
    budgets, n = {"wide": "600M,2M", "narrow": "550M,1.9M"}, 4
    procs = {}
    for name, b in budgets.items():  # the second once the first has a row: it asks for what is there
        procs[name] = subprocess.Popen(_cmd(tmp, address, name, (b,), n, cache="shared"), env=env, cwd=tmp,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 300
        while (len(procs) == 1 and not list((tmp / "shared").glob("part-*.parquet")) and time.time() < deadline
               and procs[name].poll() is None):
            time.sleep(0.2)
    outs = {name: p.communicate(timeout=600)[0] for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, f"search {name} failed:\n" + outs[name][-3000:]
    landed: dict[tuple, list[tuple[float, dict]]] = {}  # key -> [(when its part landed, row)]
    for part in sorted((tmp / "shared").glob("part-*.parquet")):
        for row in pq.read_table(part).to_pylist():
            key = (row["supernet_id"], row["settings_id"], row["arch"])
            landed.setdefault(key, []).append((part.stat().st_mtime, row))
    for name, b in budgets.items():  # every evaluation a search reports is a row in the cache
        label = Budget.parse(b).label
        s = re.search(rf"search {re.escape(label)}: (\d+) trials, (\d+) cache answers", outs[name])
        mine = [r for rows in landed.values() for _, r in rows if r["search"] == name]
        print(f"{name} ({label}): {s.group(1)} evaluated, {s.group(2)} answered from the cache")
        assert int(s.group(1)) == len(mine) and int(s.group(1)) + int(s.group(2)) == n
    twice = {k: sorted(v, key=lambda x: x[0]) for k, v in landed.items() if len(v) > 1}
    for key, ((first_landed, _), *later) in twice.items():
        for _, row in later:  # began (after its own cache check) before the first row landed
            assert row["started"].timestamp() <= first_landed + 0.5, \
                f"{key[2]} evaluated again by {row['search']} after the other search's row landed"
    print(f"{len(landed)} architectures, {len(twice)} evaluated by both while both were in flight")


def test_a_latency_budget_is_checked_on_the_tables_device_and_recorded(setup, tmp_path):
    """--budget ...ms@torch with a table of this machine: MLflow records which table,
    runtime and machine judged the budget, and the found architecture's measured latency
    beside the table's estimate. A table of another machine: the check is not run, and a
    tag says where to run it."""
    from lighttrack.search.profiler import profile

    tmp, env, address = setup
    table = profile("torch", threads=1, repeats=1, warmup=0, contexts=1)
    here = tmp_path / "here.json"
    table.save(here)
    elsewhere = tmp_path / "elsewhere.json"
    data = json.loads(here.read_text())
    data["machine"]["hostname"] = "edge-device-7"
    elsewhere.write_text(json.dumps(data))
    ms = f"{table.estimate(resolve('lighttrack-mobile')):.1f}ms@torch"  # room for many archs, not all
    client = mlflow.tracking.MlflowClient(env["MLFLOW_TRACKING_URI"])
    for name, path in (("lat-here", here), ("lat-elsewhere", elsewhere)):
        cmd = _cmd(tmp, address, name, (f"2000M,6M,{ms}",), 2, cache=f"cache-{name}")
        out = _run(cmd + ["--latency-table", str(path)], env, tmp)
        run_id = out.split("LIGHTTRACK_RUN_ID=")[-1].split()[0]
        run = client.get_run(run_id)
        p, m = run.data.params, run.data.metrics
        assert p["latency.table"] == str(path) and p["latency.runtime"] == "torch" and p["latency.threads"] == "1"
        label = next(k.split("/", 1)[1] for k in m if k.startswith("best_ao/"))
        if name == "lat-here":
            assert p["latency.machine"] == table.machine["hostname"]
            assert m[f"latency_measured_ms/{label}"] > 0
            assert m[f"latency_estimate_ms/{label}"] <= float(ms.split("ms")[0])  # the budget held by the table
            assert "found architecture measured" in out
        else:
            assert p["latency.machine"] == "edge-device-7"
            assert not any(k.startswith("latency_measured_ms") for k in m)
            assert "edge-device-7" in run.data.tags["lighttrack.latency_check"]


def test_successive_halving_and_the_predictor_in_the_job_record_what_they_saved(setup):
    """``fidelity.enabled``: Tune's ASHA stops candidates after the first of the 3 validation
    sequences; each trial leaves a rung row, only those that reached the top a whole-split
    row; the MLflow run records what halving and the predictor saved (issue 36)."""
    tmp, env, address = setup
    n = 8
    cmd = _cmd(tmp, address, "halving", (FIRST,), n, cache="cache-halving") + [
        "--set", "eval.val_sequences=3", "fidelity.enabled=true", "fidelity.min_sequences=1",
        "predictor.enabled=true", "predictor.min_rows=5", "predictor.refit_every=1", "predictor.pool=2"]
    out = _run(cmd, env, tmp)
    assert "successive halving over 3 validation sequences, rungs (1, 3)" in out
    cache = EvalCache(str(tmp / "cache-halving"))
    whole, rung = cache.rows(), cache.rows(partial=True)
    assert {r["sequences"] for r in rung} == {1} and whole
    assert {r["arch"] for r in whole} <= {r["arch"] for r in rung}  # every trial began at the first rung
    stopped = len(rung) - len(whole)
    assert len(rung) == n and stopped >= 1, out[-3000:]
    assert "stopped after 1 of 3 sequences" in out
    run = mlflow.tracking.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(
        out.split("LIGHTTRACK_RUN_ID=")[-1].split()[0])
    m, label = run.data.metrics, Budget.parse(FIRST).label
    assert m[f"stopped/{label}"] == stopped
    assert m[f"saved_halving/{label}"] == pytest.approx(stopped * (1 - 1 / 3))
    assert f"saved_predictor/{label}" in m and f"saved_cache/{label}" in m
    best = re.search(rf"search {re.escape(label)}: best AO ([0-9.]+) ", out)
    assert float(best.group(1)) == pytest.approx(max(r["ao"] for r in whole), abs=1e-4)  # a whole-split figure
