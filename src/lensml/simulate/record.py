"""`simulation.json`: the seed, settings and versions of a simulated folder, and its claim on it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from ..errors import BadInputError, MissingFileError
from ..io.atomic import sweep_stale_temps, write_json_atomic

RECORD_NAME = "simulation.json"


def claim_folder(out: Path, record: dict[str, Any], guarded: Sequence[str], foreign: Sequence[str]) -> None:
    """Record this simulation in `out`, refusing a folder that holds another one.

    A folder whose record agrees on every `guarded` key is the same simulation (a rerun finishes
    it); a folder without a record but with any of the `foreign` entries holds data lensml did not make.
    A rerun also clears the temporary files a killed run left behind.
    """
    path = out / RECORD_NAME
    record = json.loads(json.dumps(record))  # tuples become lists, as they read back
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        differ = [k for k in guarded if not isinstance(old, dict) or old.get(k) != record[k]]
        if differ:
            raise BadInputError(f"{out} holds a different simulation ({RECORD_NAME}: {', '.join(differ)} differ); "
                                "use the same settings to finish it, or choose a new folder")
    elif any((out / name).exists() for name in foreign):
        raise BadInputError(f"{out} already holds data not made by lensml ({', '.join(foreign)}); choose a new folder")
    write_json_atomic(path, record)
    sweep_stale_temps(out, recursive=True)


def read_record(out: Path, kind: str | None = None) -> dict[str, Any]:
    """The record of a simulated folder (of `kind`, when given)."""
    path = out / RECORD_NAME
    if not path.is_file():
        raise MissingFileError(f"{out}: no {RECORD_NAME}; is this a folder made by lensml simulate?")
    try:
        record = json.loads(path.read_text())
    except ValueError:
        raise BadInputError(f"{path}: not valid JSON") from None
    if not isinstance(record, dict) or (kind is not None and record.get("kind") != kind):
        raise BadInputError(f"{path}: not a record of a {kind or 'lensml'} simulation")
    return record


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), K counted from 1: shard K of N takes items i with i % N == K - 1."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise BadInputError(f"--shard {text!r}: write K/N, e.g. 1/4 (shards are numbered 1 to N)")
    shard = int(match.group(1)), int(match.group(2))
    check_shard(shard)
    return shard


def check_shard(shard: tuple[int, int]) -> None:
    k, total = shard
    if total < 1 or not 1 <= k <= total:
        raise BadInputError(f"shard {k}/{total}: need 1 <= K <= N (shards are numbered 1 to N)")
