"""tests/home.py: the fingerprint that keeps the suite off the user's files sees every change."""
from __future__ import annotations

import os
from pathlib import Path

from tests.home import HOME, ROOT, changes, fingerprint


def test_fingerprint_sees_files_created_changed_and_deleted(tmp_path):
    (tmp_path / "data" / "synth").mkdir(parents=True)
    kept, edited, gone = (tmp_path / "data" / "synth" / n for n in ("a.jpg", "b.txt", "c.txt"))
    for p in (kept, edited, gone):
        p.write_text("x")
    db = tmp_path / "mlflow.db"
    before = fingerprint(tmp_path / "data", db, tmp_path / "runs")  # runs/ and the db do not exist
    assert str(kept) in before and str(db) not in before
    assert changes(before, fingerprint(tmp_path / "data", db, tmp_path / "runs")) == []

    edited.write_text("xy")
    gone.unlink()
    db.write_text("")
    (tmp_path / "runs").mkdir()
    got = changes(before, fingerprint(tmp_path / "data", db, tmp_path / "runs"))
    assert f"created {db}" in got and f"created {tmp_path / 'runs'}" in got
    assert f"deleted {gone}" in got and f"changed {edited}" in got
    assert f"changed {tmp_path / 'data' / 'synth'}" in got  # its entries changed
    assert not any(str(kept) in line for line in got)


def test_same_size_rewrite_is_seen(tmp_path):
    f = tmp_path / "f"
    f.write_text("a")
    before = fingerprint(f)
    st = f.stat()
    f.write_text("b")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert changes(before, fingerprint(f)) == [f"changed {f}"]


def test_the_session_runs_in_its_own_folder_not_the_checkout():
    assert Path.cwd() == HOME and not HOME.is_relative_to(ROOT)
    assert (HOME / "data" / "synth" / "got10k" / "val" / "list.txt").is_file()
    assert (HOME / "configs").resolve() == ROOT / "configs"
