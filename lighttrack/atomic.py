"""Outputs that appear whole or not at all.

A command that fails half way must not leave what looks like a finished result (a
playable partial video, a results folder a scorer would read, a model card with empty
scores). Both helpers write under a hidden temporary name beside the target and move it
into place only when the ``with`` block ends without an error; on an error the temporary
is removed and the target is as it was.

    with atomic_file("out/video.mp4") as tmp:      # tmp: out/.video.mp4.partial-<pid>.mp4
        write_video(tmp)
    with atomic_dir("results/") as tmp:            # tmp: results/.partial-<pid>/
        write_files(tmp)                           # then moved in, entry by entry
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_file", "atomic_dir"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _writable_parent(target: Path) -> None:
    """Create ``target``'s folder, or fail naming the path (a file where a folder should be,
    a read-only place) before any work is done."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the output folder {target.parent}: {e.strerror}") from None
    if not os.access(target.parent, os.W_OK):
        raise PermissionError(f"output folder {target.parent} is not writable")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path to write instead of ``path`` (same folder, same suffix, so writers
    that choose a format by extension still do); it replaces ``path`` on success."""
    target = Path(path)
    _writable_parent(target)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}{target.suffix}")
    _remove(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{target}: nothing was written")
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder inside ``path`` to write instead of it; on success each of its
    entries replaces the same-named entry of ``path`` (what else ``path`` holds stays)."""
    target = Path(path)
    _writable_parent(target / "x")
    tmp = target / f".partial-{os.getpid()}"
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        for entry in sorted(tmp.iterdir()):
            dst = target / entry.name
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            os.replace(entry, dst)
    finally:
        _remove(tmp)
