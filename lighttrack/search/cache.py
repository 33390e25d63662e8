"""Evaluation cache: every evaluated candidate as a row of a Parquet dataset.

Key = (supernet id, architecture canonical string, evaluation-settings id, sequences):

* supernet id  = :func:`supernet_id`, a content hash of the checkpoint's weights;
* settings id  = :func:`settings_id`, a hash of everything that changes a score: the
  validation sequences (names, annotations and frame bytes), the tracker
  hyper-parameters, the recalibration settings (batches, batch size, data) and the seed;
* sequences    = how many validation sequences the figures cover, in the evaluator's rung
  order (``CandidateEvaluator.order``): null for the whole split. A successive-halving search
  writes a row per rung a candidate reached; only whole-split rows are fitness figures
  (:meth:`EvalCache.rows`), the partial ones are read by :meth:`EvalCache.partial`.

The cache is a directory (local path or pyarrow.fs URI such as ``s3://bucket/cache``)
of ``part-*.parquet`` files. Writers never modify a file: each append adds a new part,
so concurrent evaluator processes need no lock; readers take the first row per key.

A bucket that stalls or refuses connections is waited out: every store operation is
retried with back-off for ``patience_s`` (pyarrow's S3 client alone gives up after about
100 s of a stall, 6 s of refusals). Only network-side errors are retried; a missing
bucket or a denied key fails at once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
import uuid
from typing import Any, Callable, Iterable, Mapping, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["SCHEMA", "SCORE_COLUMNS", "EvalCache", "CachedEvaluator", "supernet_id", "settings_id", "fingerprint_sequences",
           "fitness", "baseline_fitness", "metric"]

SCHEMA = pa.schema([
    ("supernet_id", pa.string()),
    ("settings_id", pa.string()),
    ("arch", pa.string()),
    # The fitness is the settings' metric (ao | eao); rows cached before it existed are AO rows.
    ("metric", pa.string()),
    ("fitness", pa.float64()),
    ("baseline_fitness", pa.float64()),  # a tracker that stays at its start box, same frames
    ("ao", pa.float64()),  # GOT-10k figures (metric ao)
    ("baseline_ao", pa.float64()),
    ("sr50", pa.float64()),
    ("sr75", pa.float64()),
    ("eao", pa.float64()),  # VOT figures (metric eao)
    ("baseline_eao", pa.float64()),
    ("accuracy", pa.float64()),
    ("failures", pa.int64()),
    ("params", pa.int64()),
    ("macs", pa.int64()),
    ("latency_ms", pa.float64()),
    ("recal_batches", pa.int32()),
    ("seconds", pa.float64()),
    ("started", pa.timestamp("ms", tz="UTC")),
    ("finished", pa.timestamp("ms", tz="UTC")),
    ("search", pa.string()),  # name of the search that evaluated it
    ("budget", pa.string()),  # budget label of that search
    ("worker", pa.string()),
    ("trial", pa.string()),  # Ray Tune trial id, when run by one
    ("sequences", pa.int32()),  # a rung's row: the first N sequences of the rung order (null = all)
])
_KEY = ("supernet_id", "settings_id", "arch")  # never empty; with "sequences" the row's key
# Words of the errors a store gives while it is unreachable or overloaded (pyarrow's S3/GCS
# clients put the SDK's error type and curl's message in the OSError's text).
_TRANSIENT = ("NETWORK_CONNECTION", "SERVICE_UNAVAILABLE", "SLOW_DOWN", "THROTTLING", "INTERNAL_FAILURE",
              "REQUEST_TIMEOUT", "curlCode", "Connection refused", "Couldn't connect", "timed out")
log = logging.getLogger(__name__)
T = TypeVar("T")
SCORE_COLUMNS = ("metric", "fitness", "baseline_fitness", "ao", "baseline_ao", "sr50", "sr75", "eao",
                 "baseline_eao", "accuracy", "failures")


def fitness(row: Mapping[str, Any]) -> float:
    """A row's score by its settings' metric (a row written before the metric existed: its AO)."""
    value = row.get("fitness")
    return float(row["ao"] if value is None else value)


def baseline_fitness(row: Mapping[str, Any]) -> float | None:
    value = row.get("baseline_fitness")
    value = row.get("baseline_ao") if value is None else value
    return None if value is None else float(value)


def metric(row: Mapping[str, Any]) -> str:
    return row.get("metric") or "ao"


def supernet_id(state_dict: Mapping[str, Any]) -> str:
    """Content hash of the weights (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        arr = t.detach().cpu().contiguous().numpy() if hasattr(t, "detach") else np.asarray(t)
        h.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:20]


def fingerprint_sequences(sequences: Iterable[Any], read_bytes: Any = None) -> str:
    """Hash of a list of sequences: names, boxes, absent flags and every frame's bytes.

    ``sequences`` yields objects with ``name``, ``frames`` (paths/URIs), ``boxes`` and
    ``absent`` (the data area's ``Sequence``). ``read_bytes(path) -> bytes`` reads a frame
    (default: pyarrow.fs for URIs, ``open`` for local paths).
    """
    read = read_bytes or _read_bytes
    h = hashlib.sha256()
    for seq in sequences:
        h.update(f"seq|{seq.name}|{len(seq.frames)}|".encode())
        h.update(np.ascontiguousarray(np.asarray(seq.boxes, dtype=np.float64)).tobytes())
        h.update(np.ascontiguousarray(np.asarray(getattr(seq, "absent", ()), dtype=bool)).tobytes())
        for f in seq.frames:
            h.update(hashlib.sha1(read(str(f))).digest())
    return h.hexdigest()[:20]


def _read_bytes(path: str) -> bytes:
    if "://" in path:
        fs, p = pafs.FileSystem.from_uri(path)
        with fs.open_input_stream(p) as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return repr(value)  # exact, so 0.1 and 0.1000001 differ
    return value


def settings_id(*, sequences: str, tracker: Any, recal_batches: int, recal_batch_size: int,
                seed: int, recal_data: str = "", extra: Mapping[str, Any] | None = None) -> str:
    """Hash of every input that changes a score (see module docstring)."""
    doc = {"sequences": sequences, "tracker": _plain(tracker), "recal_batches": int(recal_batches),
           "recal_batch_size": int(recal_batch_size), "recal_data": recal_data, "seed": int(seed),
           "extra": _plain(dict(extra or {}))}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


class EvalCache:
    """The cache directory at ``location`` (created on first append)."""

    def __init__(self, location: str, patience_s: float = 900.0) -> None:
        self.location, self.patience_s = str(location), float(patience_s)
        if "://" in self.location:
            self._fs, self._root = pafs.FileSystem.from_uri(self.location)
        else:
            self._fs, self._root = pafs.LocalFileSystem(), os.path.abspath(self.location)
        self._read: set[str] = set()
        self._reached = False  # an operation on the store has succeeded
        self._rows: dict[tuple[str, str, str, int | None], dict] = {}

    def __repr__(self) -> str:
        return f"EvalCache({self.location!r}, {len(self._rows)} rows)"

    def _patiently(self, what: str, op: Callable[[], T]) -> T:
        """``op()``, retried with back-off 1 s .. 30 s while the store is unreachable."""
        t0, delay = time.monotonic(), 1.0
        while True:
            try:
                out = op()
            except OSError as e:
                waited = time.monotonic() - t0
                # a bucket this cache has used and no longer finds is a store coming back
                # (its buckets not there yet): waited out; one never found fails at once
                gone = self._reached and re.search(r"Bucket '[^']*' not found", str(e))
                if isinstance(self._fs, pafs.LocalFileSystem) or not (gone or any(w in str(e) for w in _TRANSIENT)):
                    raise
                if waited + delay > self.patience_s:
                    raise OSError(f"evaluation cache {self.location}: {what} failed for {waited:.0f} s "
                                  f"(patience {self.patience_s:.0f} s): {e}") from e
                if delay == 1.0:
                    log.warning("evaluation cache %s: %s failed (%s); retrying for up to %.0f s",
                                self.location, what, str(e).splitlines()[0][:200], self.patience_s)
                time.sleep(delay)
                delay = min(2 * delay, 30.0)
                continue
            self._reached = True
            if delay > 1.0:
                log.warning("evaluation cache %s: %s done after %.0f s of retries", self.location, what,
                            time.monotonic() - t0)
            return out

    # -- reading ----------------------------------------------------------------------------
    def refresh(self) -> int:
        """Read part files not read before; returns the number of new rows."""
        parts = sorted(f.path for f in self._parts() if f.path not in self._read)
        new = 0
        for path in parts:
            table = self._patiently(f"reading {path}",
                                    lambda: pq.read_table(path, filesystem=self._fs, schema=SCHEMA))
            for row in table.to_pylist():
                key = (*(row[k] for k in _KEY), row["sequences"])
                if key not in self._rows:  # first evaluation of a key wins
                    self._rows[key] = row
                    new += 1
            self._read.add(path)
        return new

    def _parts(self) -> list[pafs.FileInfo]:
        """The part files in the cache directory ([] before the first append)."""
        return self._patiently("listing", self._list)

    def _list(self) -> list[pafs.FileInfo]:
        info = self._fs.get_file_info(self._root)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type != pafs.FileType.Directory:
            raise NotADirectoryError(f"evaluation cache {self.location} is not a directory")
        return [f for f in self._fs.get_file_info(pafs.FileSelector(self._root))
                if f.base_name.startswith("part-") and f.base_name.endswith(".parquet")]

    def get(self, supernet: str, settings: str, arch: str, refresh: bool = False,
            sequences: int | None = None) -> dict | None:
        """The whole-split row of ``arch``, or with ``sequences`` its row of that rung."""
        if refresh:
            self.refresh()
        return self._rows.get((supernet, settings, arch, sequences))

    def rows(self, supernet: str | None = None, settings: str | None = None, partial: bool = False) -> list[dict]:
        """Whole-split rows (refreshed) for one supernet/settings pair, or all, oldest first;
        ``partial``: the rung rows instead."""
        self.refresh()
        out = [r for (s, e, _, n), r in self._rows.items()
               if (supernet is None or s == supernet) and (settings is None or e == settings)
               and (n is not None) == partial]
        return sorted(out, key=lambda r: (r["finished"] is None, r["finished"] or 0))

    def partial(self, supernet: str, settings: str, arch: str, below: int | None = None) -> dict | None:
        """The deepest rung row of ``arch`` (covering fewer than ``below`` sequences), or None."""
        rows = [r for (s, e, a, n), r in self._rows.items()
                if (s, e, a) == (supernet, settings, arch) and n is not None and (below is None or n < below)]
        return max(rows, key=lambda r: r["sequences"], default=None)

    def __len__(self) -> int:
        return len(self._rows)

    # -- writing ----------------------------------------------------------------------------
    def append(self, rows: Iterable[Mapping[str, Any]]) -> str | None:
        """Write rows as one new part file (missing fields are null); returns its path."""
        rows = [dict(r) for r in rows]
        if not rows:
            return None
        for r in rows:
            for k in _KEY:
                if not r.get(k):
                    raise ValueError(f"cache row without {k}: {r}")
        cols = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}
        table = pa.table(cols, schema=SCHEMA)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        path = f"{self._root}/{name}"
        tmp = f"{self._root}/.tmp-{name}"

        def put() -> None:  # safe to repeat: the part's name is fixed before the first try
            if self._fs.get_file_info(path).type == pafs.FileType.File:
                return  # the move of an earlier try landed; its reply was lost
            self._fs.create_dir(self._root, recursive=True)
            pq.write_table(table, tmp, filesystem=self._fs)
            self._fs.move(tmp, path)  # readers never see a half-written part

        self._patiently(f"writing {name}", put)
        self.refresh()
        return path

    def copy_parts(self, location: str) -> int:
        """Copy the part files that ``location`` (a cache dir or URI) lacks there; returns how many.

        Parts never change once written, so a part of the same name is the same part: the
        copy moves a cache between stores (an MLflow run's artifacts, a bucket) without
        reading its rows, and copying twice adds nothing.
        """
        parts = self._parts()
        if not parts:
            return 0
        dest = EvalCache(location)
        have = {f.base_name for f in dest._parts()}
        dest._fs.create_dir(dest._root, recursive=True)
        copied = 0
        for f in parts:
            if f.base_name in have:
                continue
            tmp = f"{dest._root}/.tmp-{f.base_name}"

            def put(f: pafs.FileInfo = f, tmp: str = tmp) -> None:
                pafs.copy_files(f.path, tmp, source_filesystem=self._fs, destination_filesystem=dest._fs)
                dest._fs.move(tmp, f"{dest._root}/{f.base_name}")

            dest._patiently(f"copying {f.base_name}", put)
            copied += 1
        return copied

    def table(self, supernet: str | None = None, settings: str | None = None) -> pa.Table:
        return pa.Table.from_pylist(self.rows(supernet, settings), schema=SCHEMA)


class CachedEvaluator:
    """A candidate evaluator behind the evaluation cache, for the search's Ray actors and a
    plain loop alike: a candidate the cache holds (another search's, or one a re-run trial
    finished before) is answered from it; a new row is appended, and one a store outage kept
    out is held and written with the next (:meth:`flush`).

    ``evaluator`` has ``evaluate(arch) -> row`` and ``supernet_id``/``settings_id``
    (``lighttrack.search.evaluate.CandidateEvaluator``); ``worker`` names who evaluated in
    the rows (a Ray actor: node id and pid)."""

    def __init__(self, evaluator: Any, cache: EvalCache, worker: str = "") -> None:
        self.ev, self.cache = evaluator, cache
        self.worker = worker or f"pid{os.getpid()}"
        self.evaluated = self.cache_answers = 0
        self.unwritten: list[dict] = []  # evaluated rows a store outage kept out of the cache

    def __call__(self, arch: Any, search: str = "", budget: str = "", trial: str = "",
                 sequences: int | None = None) -> dict:
        """The row of ``arch`` with ``cached``: whether the cache answered. ``sequences``: the
        row of that rung (successive halving), going on from the deepest rung row the cache
        holds for ``arch`` (a candidate promoted, or one stopped before a restart); a
        whole-split row answers every rung."""
        try:
            self.cache.refresh()
        except OSError as e:  # the store is out past the cache's patience: go on with what is known
            log.warning("evaluation cache unreadable, checking %s against the rows read before: %s", arch, e)
        sid, eid, key = self.ev.supernet_id, self.ev.settings_id, str(arch)
        rung = None if sequences is None or sequences >= self.ev.num_sequences else int(sequences)
        hit = self.cache.get(sid, eid, key) or (rung and self.cache.get(sid, eid, key, sequences=rung))
        if hit:
            self.cache_answers += 1
            return {**hit, "cached": True}
        if sequences is None:
            row = self.ev.evaluate(arch)
        else:
            row = self.ev.evaluate(arch, rung, self.cache.partial(sid, eid, key, below=rung))
        row.update(search=search, budget=budget, worker=self.worker, trial=trial)
        self.evaluated += 1
        self.unwritten.append(row)
        self.flush()
        return {**row, "cached": False}

    def flush(self) -> int:
        """Append the rows not written yet; returns how many are still held (store still out)."""
        if self.unwritten:
            try:
                self.cache.append(self.unwritten)
                self.unwritten = []
            except OSError as e:
                log.warning("%d evaluated row(s) not in the cache yet, kept to write with the next one: %s",
                            len(self.unwritten), e)
        return len(self.unwritten)
