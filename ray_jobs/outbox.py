"""Rank 0's MLflow writes on a thread of their own: training never waits for the tracking server.

A training worker puts metrics and its latest checkpoint file here and goes on. The thread
sends them in order. MLflow's client already retries one request for about 4 minutes with
back-off (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``); a write that fails after that is tried
again here, with back-off up to a minute, until :func:`close_all` gives up.

Every metric carries the time it was measured, fixed when it is put here, so a write sent
twice (a reply lost, or re-sent from a checkpoint after a restart) is the same row, which
MLflow's store keeps once.
"""
from __future__ import annotations

import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["Outbox", "outbox", "close_all"]

_BOXES: dict[tuple[str, str], "Outbox"] = {}
SLOW_S = 10.0  # a write pending this long is reported


def _say(msg: str) -> None:
    out = sys.__stdout__ or sys.stdout  # Ray Train's patched print() echoes lines twice
    out.write(f"[mlflow] {msg}\n")
    out.flush()


class Outbox:
    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client, self.run_id = MlflowClient(tracking_uri), run_id
        self._todo: queue.Queue = queue.Queue()
        self._dir = Path(tempfile.mkdtemp(prefix="lighttrack-outbox-"))
        self._checkpoint: tuple[Path, str] | None = None  # the newest one not sent yet
        self._lock = threading.Lock()
        self.sent = self.failures = 0
        self._thread = threading.Thread(target=self._work, name="mlflow-outbox", daemon=True)
        self._thread.start()

    def metrics(self, metrics: list) -> None:
        """``mlflow.entities.Metric`` rows (timestamps set by the caller), 500 a request."""
        for i in range(0, len(metrics), 500):
            self._todo.put(("batch", metrics[i:i + 500]))

    def checkpoint(self, path: Path, artifact_path: str) -> None:
        """Send a copy of ``path``; one queued during an outage is replaced by the next."""
        copy = self._dir / f"{time.monotonic_ns()}-{path.name}"
        shutil.copyfile(path, copy)
        with self._lock:
            old, self._checkpoint = self._checkpoint, (copy, artifact_path)
        if old is not None:
            old[0].unlink(missing_ok=True)
        self._todo.put(("checkpoint", None))

    def _send(self, kind: str, item) -> None:
        if kind == "batch":
            self.client.log_batch(self.run_id, metrics=item)
            return
        with self._lock:
            got, self._checkpoint = self._checkpoint, None
        if got is None:  # a newer one went out already
            return
        copy, artifact_path = got
        named = copy.with_name(copy.name.split("-", 1)[1])  # the artifact keeps the file's own name
        os.replace(copy, named)
        try:
            self.client.log_artifact(self.run_id, str(named), artifact_path)
        except BaseException:
            with self._lock:  # put it back unless a newer one came
                if self._checkpoint is None:
                    os.replace(named, copy)
                    self._checkpoint = got
            raise
        named.unlink(missing_ok=True)

    def _work(self) -> None:
        while True:
            kind, item = self._todo.get()
            if kind == "stop":
                self._todo.task_done()
                return
            # MLflow's client retries inside one call for minutes: say so while it waits
            start, delay, failed = time.monotonic(), 1.0, False
            slow = threading.Timer(SLOW_S, _say, [f"a write has waited {SLOW_S:.0f} s for the tracking server; "
                                                  f"training goes on, writes wait here"])
            slow.daemon = True
            slow.start()
            while True:
                try:
                    self._send(kind, item)
                    break
                except Exception as e:  # noqa: BLE001 - any failure of the server or the network
                    self.failures += 1
                    if not failed:
                        failed = True
                        _say(f"cannot write to the tracking server ({type(e).__name__}: {str(e)[:160]}); "
                             f"retrying with back-off, {self._todo.qsize() + 1} writes wait")
                    time.sleep(delay)
                    delay = min(delay * 2, 60.0)
            slow.cancel()
            waited = time.monotonic() - start
            if failed or waited > SLOW_S:
                _say(f"tracking server back after {waited:.0f} s; {self._todo.qsize()} writes still queued")
            self.sent += 1
            self._todo.task_done()

    def close(self, patience_s: float) -> bool:
        """Send what is queued; False when that took longer than ``patience_s``."""
        self._todo.put(("stop", None))
        self._thread.join(patience_s)
        done = not self._thread.is_alive()
        if done:
            shutil.rmtree(self._dir, ignore_errors=True)
        else:
            _say(f"gave up after {patience_s:.0f} s: {self._todo.qsize()} writes not sent to run {self.run_id}")
        return done


def outbox(tracking_uri: str, run_id: str) -> Outbox:
    """This process's outbox for one MLflow run (the stages of one worker share it)."""
    key = (tracking_uri, run_id)
    if key not in _BOXES:
        _BOXES[key] = Outbox(tracking_uri, run_id)
    return _BOXES[key]


def close_all(patience_s: float = 1800.0) -> None:
    """At a worker's end: every queued write sent, or a clear error after ``patience_s``."""
    boxes = list(_BOXES.values())
    _BOXES.clear()
    late = [b.run_id for b in boxes if not b.close(patience_s)]
    if late:
        raise RuntimeError(f"MLflow writes not sent within {patience_s:.0f} s to run(s) {late}: "
                           "the tracking server stayed unreachable")
