"""Where the tests keep what they write: one temporary folder a session, never the checkout.

The checkout's ``data/``, ``runs/`` and ``mlflow.db`` are the user's (the quick start
writes the default embedded set there); the suite reads and writes its own copy under
``HOME`` instead, and ``conftest.py`` checks the user's paths are unchanged at the end.
``HOME`` comes through ``$LIGHTTRACK_TEST_HOME`` so every process of a session shares it.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_given = "LIGHTTRACK_TEST_HOME" in os.environ
if not _given:
    os.environ["LIGHTTRACK_TEST_HOME"] = tempfile.mkdtemp(prefix="lighttrack-tests-")
HOME = Path(os.environ["LIGHTTRACK_TEST_HOME"])
OWNED = not _given  # made here, so removed at the end of the session
EMBEDDED = HOME / "data" / "synth"  # the tiny embedded set, laid out as the pipeline's data/synth
USERS = tuple(ROOT / p for p in ("data", "runs", "mlflow.db", "mlruns"))  # what the suite must not touch


def fingerprint(*paths: Path) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of each of ``paths`` and all beneath it; missing ones are absent.
    A folder's mtime changes when an entry is added or removed, so those show too."""
    out: dict[str, tuple[int, int]] = {}
    for top in paths:
        if not os.path.lexists(top):
            continue
        entries = [top]
        if top.is_dir() and not top.is_symlink():
            entries += [Path(folder) / n for folder, dirs, files in os.walk(top) for n in dirs + files]
        for p in entries:
            st = p.lstat()
            out[str(p)] = (0 if stat.S_ISDIR(st.st_mode) else st.st_size, st.st_mtime_ns)
    return out


def changes(before: dict, after: dict) -> list[str]:
    """Lines naming what was created, changed or deleted between two fingerprints."""
    return ([f"created {p}" for p in sorted(after.keys() - before.keys())]
            + [f"deleted {p}" for p in sorted(before.keys() - after.keys())]
            + [f"changed {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]])
