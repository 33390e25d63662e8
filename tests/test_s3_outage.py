"""The evaluation cache's bucket out for 30 s, on the real S3-compatible server (moto's
server mode), paused or stopped and started again by the id of its process:

* refusing: a cache write that starts while nothing answers on the endpoint waits, and
  lands once when the server is back;
* stalled: a search whose bucket stops answering mid-search (the server's process paused)
  finishes with every candidate in the cache once and none evaluated twice.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pyarrow.fs as pafs
import pytest

from lighttrack.search.cache import EvalCache
from devcluster.services import LocalS3, free_port
from tests.home import EMBEDDED, ROOT

OUTAGE_S = 30
pytestmark = [pytest.mark.services]


def _row(arch: str) -> dict:
    return {"supernet_id": "s", "settings_id": "e", "arch": arch, "ao": 0.5}


@pytest.fixture
def s3(tmp_path, monkeypatch):
    server = LocalS3(tmp_path / "s3")
    server.endpoint = f"http://127.0.0.1:{free_port()}"  # its address, before it runs
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)  # pyarrow's S3 client reads the endpoint from here
    yield server
    server.stop()


def test_a_cache_write_waits_out_a_refusing_endpoint_and_lands_once(s3, caplog):
    s3.start()
    cache = EvalCache(s3.uri("cache"))
    cache.append([_row("before")])
    s3.stop()  # nothing listens on the endpoint now: connections are refused
    down = time.monotonic()
    done: dict = {}
    writer = threading.Thread(target=lambda: done.update(path=cache.append([_row("during")]),
                                                         at=time.monotonic()))
    with caplog.at_level(logging.WARNING, logger="lighttrack.search.cache"):
        writer.start()
        time.sleep(OUTAGE_S)
        assert writer.is_alive(), "the write gave up while the store was out"
        s3.start()  # the same address; moto keeps no state, so the bucket starts empty
        up = time.monotonic()
        writer.join(timeout=120)
    assert "path" in done, "the write did not land after the store came back"
    print(f"refused for {up - down:.0f} s; the write landed {done['at'] - up:.1f} s after the server was back")
    assert any("retrying for up to" in r.message for r in caplog.records)
    assert any("done after" in r.message for r in caplog.records)
    fresh = EvalCache(s3.uri("cache"))
    assert [r["arch"] for r in fresh.rows()] == ["during"]  # once, and nothing half-written
    names = [f.base_name for f in s3.filesystem().get_file_info(pafs.FileSelector(f"{s3.bucket}/cache"))]
    assert [n for n in names if n.startswith("part-")] == [done["path"].rsplit("/", 1)[1]]


def test_a_missing_bucket_fails_at_once_rather_than_being_waited_out(s3):
    s3.start()
    t0 = time.monotonic()
    with pytest.raises(OSError):
        EvalCache("s3://no-such-bucket/cache").append([_row("x")])
    assert time.monotonic() - t0 < 15  # not the cache's patience (900 s)


@pytest.mark.slow
@pytest.mark.parametrize("stall_s", [OUTAGE_S, pytest.param(150, marks=pytest.mark.long)])
def test_a_search_whose_bucket_stalls_keeps_every_candidate_once(s3, tmp_path, stall_s):
    """2 evaluators, 6 evaluations, the cache at s3://; after the first row lands the
    server's process is paused (SIGSTOP) and resumed (SIGCONT). pyarrow's S3 client rides
    out a 30 s pause itself (a request waits ~33 s); 150 s outlasts its 3 tries, so the
    cache's own retry carries the writes."""
    import pyarrow.parquet as pq
    import torch

    from lighttrack.models import TrackSupernet

    n = 6
    s3.start()
    torch.manual_seed(0)
    torch.save({"model": TrackSupernet().state_dict()}, tmp_path / "checkpoint.pt")
    synth = EMBEDDED / "got10k"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "ray_jobs.search", "--supernet", str(tmp_path / "checkpoint.pt"),
           "--config", str(ROOT / "configs/search_micro.yaml"), "--cache", s3.uri("cache"),
           "--name", "stall", "--address", "local", "--storage-path", str(tmp_path / "ray"),
           "--budget", "600M,2M", "--set", f"optimizer.evaluations={n}", "--set", "workers=2",
           "--set", f"eval.val_root={synth}", "--set", f"eval.recalibrate_root={synth}",
           "--set", "eval.val_frames=12"]
    job = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fs, root = s3.filesystem(), f"{s3.bucket}/cache"

    def parts() -> list[str]:
        info = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        return [f.path for f in info if f.base_name.startswith("part-")]

    try:
        deadline = time.time() + 400
        while not parts() and time.time() < deadline and job.poll() is None:
            time.sleep(0.2)
        assert parts(), "no row landed: " + (job.stdout.read() if job.poll() is not None else "timed out")
        before = len(parts())
        os.kill(s3._proc.pid, signal.SIGSTOP)
        try:
            time.sleep(stall_s)
        finally:
            os.kill(s3._proc.pid, signal.SIGCONT)
        out = job.communicate(timeout=900)[0]
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, out[-4000:]
    raw = [r for p in parts() for r in pq.read_table(p, filesystem=fs).to_pylist()]
    archs = [r["arch"] for r in raw]
    s = re.search(r"search \S+: (\d+) trials, (\d+) cache answers, .*?, ([\d.]+) s", out)
    trials, answers, seconds = int(s.group(1)), int(s.group(2)), float(s.group(3))
    print(f"bucket paused {stall_s} s after {before} of {n} rows; search {seconds:.0f} s: {trials} trials, "
          f"{answers} cache answers, {len(raw)} rows in {len(parts())} parts, {len(set(archs))} architectures; "
          f"{out.count('retrying for up to')} store operation(s) retried by the cache")
    assert trials + answers == n  # every candidate answered
    assert len(archs) == len(set(archs)) == trials  # each evaluated one is in the cache, once
    assert "could not be written to the cache" not in out
    if stall_s > 100:  # past the S3 client's own tries: the cache's retry did the work
        assert "retrying for up to" in out, out[-3000:]
