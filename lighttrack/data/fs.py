"""Dataset roots that are local paths or ``pyarrow.fs`` URIs (``file://``, ``s3://``, ``gs://``).

Every node of a cluster must read the same data, so readers never call ``open`` directly:
they name files by a *location* string (a local path or a URI) and read it through here.
``join`` keeps the form of its root, so a sequence read from ``s3://b/got10k`` names its
frames ``s3://b/got10k/val/GOT-10k_Val_000001/00000001.jpg``.
"""
from __future__ import annotations

import functools
import io
import os
import posixpath
from urllib.parse import urlparse

import cv2
import numpy as np
import pyarrow.fs as pafs

__all__ = ["DataError", "is_uri", "join", "absolute", "resolve", "read_bytes", "read_text", "size", "file_info", "exists", "is_dir",
           "list_dir", "decode_image", "read_image", "local_path"]


class DataError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line)."""


def is_uri(location: str) -> bool:
    scheme = urlparse(str(location)).scheme
    return len(scheme) > 1  # "C:" style drive letters are not schemes


def join(location: str, *parts: str) -> str:
    """Path join that keeps URIs as URIs."""
    location = str(location)
    if is_uri(location):
        joined = posixpath.join(location.rstrip("/"), *parts)
        if any(".." in p.split("/") for p in parts):  # object stores have no "..": resolve it here
            u = urlparse(joined)
            joined = f"{u.scheme}://{u.netloc}{posixpath.normpath(u.path)}"
        return joined
    return os.path.join(location, *parts)


def absolute(location: str, base: str | os.PathLike = ".") -> str:
    """The one rule for a location given in a config or on the command line: a URI stays as
    it is; a local path is made absolute, a relative one taken relative to ``base`` (a
    folder, or a bucket URI such as ``s3://bucket/prefix`` that holds the same tree)."""
    if is_uri(location):
        return location
    if is_uri(str(base)) and not os.path.isabs(location):
        return join(str(base), location)
    return os.path.realpath(os.path.join(os.path.expanduser(str(base)), os.path.expanduser(location)))


@functools.lru_cache(maxsize=16)
def _filesystem(scheme: str, netloc: str, pid: int) -> pafs.FileSystem:
    # One filesystem object per bucket/host and *process*: a DataLoader worker forked from a
    # process that already held an S3 client must not reuse its connections.
    return pafs.FileSystem.from_uri(f"{scheme}://{netloc}/")[0]


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI."""
    location = str(location)
    if not is_uri(location):
        return pafs.LocalFileSystem(), os.path.abspath(location)
    u = urlparse(location)
    if u.scheme == "file":
        return pafs.LocalFileSystem(), u.path
    try:
        fs = _filesystem(u.scheme, u.netloc, os.getpid())
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError subclasses
        raise DataError(f"{location}: cannot open filesystem: {e}") from None
    return fs, f"{u.netloc}{u.path}"


def local_path(location: str) -> str | None:
    """The local path behind a location, or None for a remote URI."""
    if not is_uri(location):
        return str(location)
    u = urlparse(str(location))
    return u.path if u.scheme == "file" else None


def read_bytes(location: str) -> bytes:
    path = local_path(location)
    try:
        if path is not None:
            with open(path, "rb") as f:
                return f.read()
        fs, p = resolve(location)
        with fs.open_input_file(p) as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(f"{location}: file not found") from None
    except OSError as e:
        raise DataError(f"{location}: cannot read: {e}") from None


def read_text(location: str) -> str:
    try:
        return read_bytes(location).decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{location}: not UTF-8 text: {e}") from None


def _info(location: str) -> pafs.FileInfo:
    fs, p = resolve(location)
    return fs.get_file_info(p)


def size(location: str) -> int | None:
    """Size in bytes of a file, or None when it does not exist (no read)."""
    info = _info(location)
    return info.size if info.type == pafs.FileType.File else None


def file_info(location: str) -> tuple[int | None, int | None]:
    """(size in bytes, modification time in ns) of a file; (None, None) when it does not exist."""
    info = _info(location)
    if info.type != pafs.FileType.File:
        return None, None
    return info.size, info.mtime_ns


def exists(location: str) -> bool:
    return _info(location).type != pafs.FileType.NotFound


def is_dir(location: str) -> bool:
    return _info(location).type == pafs.FileType.Directory


def list_dir(location: str) -> list[str]:
    """Sorted names (not paths) of the entries of a directory; [] when it does not exist."""
    fs, p = resolve(location)
    if fs.get_file_info(p).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=False))
    return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos)


def image_size(location: str) -> tuple[int, int]:
    """(width, height) of an image from its header (no decode)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(read_bytes(location))) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{location}: not a readable image ({e})") from None


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_image(data: bytes, where: str = "image", reduce: int = 1) -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB; ``reduce`` 2, 4 or 8 decodes at that
    fraction of the size (a JPEG then skips most of its inverse DCT: 2-3x faster), so
    pixel ``i`` covers ``[reduce * i, reduce * (i + 1))`` of the full image."""
    flag = _REDUCED[reduce]
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag) if data else None
    if img is None:
        raise DataError(f"{where}: not a readable image ({len(data)} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(location: str, reduce: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (OpenCV decode, see :func:`decode_image`)."""
    return decode_image(read_bytes(location), str(location), reduce)
