"""Atomic file writes: a killed run leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any, Iterator

from ..errors import LensmlError


_COUNTER = itertools.count()
# Temporary names carry the host and process, so a rerun can tell a dead run's leftovers from a live
# writer's file, even on a file system shared by several machines.
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
_TEMP_NAME = re.compile(r"\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-\d+\.tmp(\.[^.]+)?")
# Test hook: LENSML_STOP_AFTER_WRITES=k makes the process stop itself (SIGSTOP) right after its k-th
# completed atomic write (counted per process: run with --workers 1), so a test can SIGKILL it at
# an exact point instead of racing a timer.
# Read once at import; unset (the normal case), a write pays one falsy check.
_STOP_AFTER = int(os.environ.get("LENSML_STOP_AFTER_WRITES") or 0)
_WRITES = itertools.count(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temps(folder: str | os.PathLike, recursive: bool = False) -> int:
    """Delete the temporary files that killed lensml runs on this machine left in `folder`.

    Only names lensml makes are touched, and only when their process is gone; returns how many.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    walk = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    removed = 0
    for root, _, names in walk:
        for name in names:
            match = _TEMP_NAME.fullmatch(name)
            if match and match["host"] == _HOST and int(match["pid"]) != os.getpid() and not _alive(int(match["pid"])):
                Path(root, name).unlink(missing_ok=True)
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the final suffix so writers that infer a format from it
    (matplotlib, PIL) still work, and is unique to this process and call, so parallel workers
    never share one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{_HOST}-{os.getpid()}-{next(_COUNTER)}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LensmlError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LensmlError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if _STOP_AFTER and next(_WRITES) == _STOP_AFTER:
        os.kill(os.getpid(), signal.SIGSTOP)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")
