"""Which items a model trained on: per-item content digests kept in the model file, and the held-out rule.

Evaluation and calibration score only what training did not see, recognised by content, so a
copied, reordered or grown training set never has a trained item scored.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .data.lens_set import LensSet
from .errors import BadInputError
from .io.manifest import Manifest
from .modelfile import ModelInfo


@dataclass(frozen=True)
class DataIdentity:
    """Which data a model was trained on, so evaluation can hold out what training saw."""

    path: str
    sha256: str
    n: int
    digests: np.ndarray | None = field(default=None, compare=False, repr=False)  # one per item, `item_digests`

    def record(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "n": self.n}


def item_digests(items: Iterable[bytes]) -> np.ndarray:
    """An 8-byte content digest per item (a scene's pixels, a stamp's manifest entry), as uint64.

    The model file keeps those of its training items, so evaluation recognises them in any folder:
    after a copy, a reordering, or images added to the training set.
    """
    return np.array([int.from_bytes(hashlib.blake2b(item, digest_size=8).digest(), "little") for item in items],
                    dtype=np.uint64)


def manifest_identity(manifest: Manifest) -> DataIdentity:
    """A data.json's identity, with a digest of each entry (file names and drawn values)."""
    return DataIdentity(str(manifest.path), manifest.sha256, len(manifest),
                        item_digests(json.dumps(e, sort_keys=True).encode() for e in manifest.entries))


def lens_identity(data: LensSet) -> DataIdentity:
    """A lens-finding folder's identity, with a digest of each normalised scene's pixels."""
    return DataIdentity(str(data.root), data.sha256, data.n,
                        item_digests(np.asarray(data.images[k]).tobytes() for k in range(data.n)))


def held_out(info: ModelInfo, data: DataIdentity, what: str) -> tuple[np.ndarray, str]:
    """Rows of `data` the model did not train on, and a phrase saying which they are."""
    trained = info.training.get("train_digests")
    if trained is not None and data.digests is not None:
        seen = np.frombuffer(base64.b64decode(trained), dtype=np.uint64)
        rows = np.flatnonzero(~np.isin(data.digests, seen))
        subset = f"all {what}" if len(rows) == data.n else f"the {len(rows)} {what} the model did not train on"
    elif info.training.get("data", {}).get("sha256") == data.sha256:  # model files from before digests
        rows = np.sort(np.asarray(info.training.get("val_indices", []), dtype=np.int64))
        subset = f"the validation {what} (this set trained the model)"
    else:
        rows, subset = np.arange(data.n), f"all {what}"
    if len(rows) == 0:
        raise BadInputError(f"{data.path}: the model trained on every one of these {what}; evaluate on another set")
    return rows, subset
