"""Packed cache of a dataset: one memory-mapped .npy file, built once, checked against its sources.

An epoch then reads one file instead of reopening thousands of FITS files. The cache records a
fingerprint of its source files (relative path, size, modification time) and the settings that
shaped it (e.g. the normalisation); if either changes, it is rebuilt.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import __version__
from ..errors import LensmlError
from .atomic import atomic_path, sweep_stale_temps, write_json_atomic

CACHE_FOLDER = "lensml_cache"


def fingerprint(files: Sequence[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        st = path.stat()
        digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _writable(folder: Path) -> bool:
    """Writable by us and not marked read-only: root may write anywhere, but a folder without
    write bits (a shared data release) is left as it is."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def cache_dir_for(root: Path) -> Path:
    """The dataset's own cache folder, or one under ~/.cache/lensml when the dataset is read-only."""
    local = root / CACHE_FOLDER
    if _writable(root) or local.is_dir() and _writable(local):
        return local
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return _user_cache_home() / "lensml" / tag


def _user_cache_home() -> Path:
    """$XDG_CACHE_HOME when it is an absolute path (an empty or relative one is ignored, as the XDG
    rules say, rather than caching into the working directory), else ~/.cache."""
    configured = os.environ.get("XDG_CACHE_HOME", "")
    return Path(configured) if os.path.isabs(configured) else Path.home() / ".cache"


def packed_array(
    name: str,
    root: Path,
    files: Sequence[Path],
    settings: dict,
    shape: tuple[int, ...],
    fill: Callable[[np.ndarray], None],
    cache_dir: Path | None = None,
) -> np.ndarray:
    """Return the cached float32 array `name` (memory-mapped, read-only), building it with `fill` if stale."""
    folder = cache_dir or cache_dir_for(root)
    data_path, meta_path = folder / f"{name}.npy", folder / f"{name}.json"
    meta = {"fingerprint": fingerprint(files, root), "settings": settings, "shape": list(shape), "lensml": __version__}
    if data_path.is_file() and meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except ValueError:
            old = {}
        if {k: old.get(k) for k in ("fingerprint", "settings", "shape")} == {k: meta[k] for k in ("fingerprint", "settings", "shape")}:
            return np.load(data_path, mmap_mode="r")
    sweep_stale_temps(folder)  # a killed build leaves a file as large as the cache
    with atomic_path(data_path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        _reserve_blocks(tmp, data_path)
        fill(array)
        array.flush()
        del array
    write_json_atomic(meta_path, meta)
    return np.load(data_path, mmap_mode="r")


def _reserve_blocks(tmp: Path, data_path: Path) -> None:
    """Allocate the memory-mapped file's disk blocks before filling it.

    The mapped file is sparse: on a full disk the first write to an unbacked page kills the process
    with SIGBUS, with no message. Allocating up front turns that into a one-line error naming the size.
    """
    if not hasattr(os, "posix_fallocate"):  # not on macOS or Windows: they keep the sparse file
        return
    nbytes = tmp.stat().st_size
    with open(tmp, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, nbytes)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                return  # a file system that cannot pre-allocate: fill it as before
            raise LensmlError(f"not enough disk space for the cache {data_path}: it needs "
                              f"{math.ceil(nbytes / 1e8) / 10:.1f} GB, {shutil.disk_usage(tmp.parent).free / 1e9:.1f} "
                              "GB are free; free some space and rerun") from None
