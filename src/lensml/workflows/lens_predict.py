"""`lensml predict` for lens finders: a survey's scenes streamed through the model.

Scenes are read and normalised a batch at a time by loader processes, so memory does not grow
with the number of scenes, and no packed cache is built (a survey's would not fit on disk).
Rows are appended to `OUT.partial` as batches finish; a rerun with the same model and input keeps
the rows already there and scores the rest, and `OUT` appears, complete, only at the end.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.band_norm import normalise_bands
from ..data.inputs import lens_mask_value, model_input, read_lens_scene
from ..data.lens_set import CUTOUTS, SceneSource, check_data_fits, is_lens_folder, scene_source
from ..errors import BadInputError, LensmlError, MissingFileError
from ..io.atomic import write_json_atomic
from ..io.tables import format_table
from ..modelfile import ModelInfo, load_model, model_path
from ..device import device_name, resolve_device
from ..inference import view_count
from .lens_eval import lens_probabilities, temperature
from ..report import report


@dataclass(frozen=True)
class SceneList:
    """The scenes to score: keys (IDs of a challenge folder, or file names) and how to read one."""

    key_name: str  # CSV column of the keys: "ID" or "file"
    keys: list
    root: Path
    folder: SceneSource | None  # a folder's scenes; None for a list of files
    shape: tuple[int, int, int]  # (bands, H, W) the model takes
    mask_value: float | None

    def read(self, key) -> np.ndarray:
        if self.folder is not None:
            return self.folder.read(key, self.shape)
        return read_lens_scene(self.root / key, self.shape[0], self.shape)


def scene_list(path: Path, info: ModelInfo) -> SceneList:
    """A challenge or cutout folder, or a text file naming one file per scene (a band file or a cube)."""
    shape = (info.arch_kwargs["in_channels"], *info.image_size)
    if is_lens_folder(path):
        folder = scene_source(path)
        return SceneList(folder.key_name, folder.keys, path, folder, shape, folder.mask_value)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the list of files ({exc})") from None
    files = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not files:
        raise BadInputError(f"{path}: lists no files (one FITS file per scene, one per line)")
    return SceneList("file", files, path.parent, None, shape, lens_mask_value(info))


class _Batches(torch.utils.data.Dataset):
    """Batch k of the scenes, read and normalised (runs in the loader processes)."""

    def __init__(self, scenes: SceneList, keys: list, batch_size: int, norm: str):
        self.scenes, self.keys, self.batch_size, self.norm = scenes, keys, batch_size, norm

    def __len__(self) -> int:
        return math.ceil(len(self.keys) / self.batch_size)

    def __getitem__(self, k: int) -> tuple[list, torch.Tensor | LensmlError]:
        keys = self.keys[k * self.batch_size : (k + 1) * self.batch_size]
        try:
            scenes = np.stack([self.scenes.read(key) for key in keys])
        except LensmlError as exc:  # handed to the main process as data: re-raised there as it is,
            return keys, exc        # not wrapped in the loader's traceback
        return keys, torch.from_numpy(normalise_bands(scenes, self.norm, self.scenes.mask_value))


class ResumableCsv:
    """`OUT.partial` grows batch by batch; its rows survive a killed run; `OUT` is renamed into place at the end.

    `OUT.partial.json` records what the rows belong to, so a rerun with another model or input starts over.
    """

    def __init__(self, path: str | os.PathLike, header: list[str], identity: dict):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.record = self.path.with_name(self.path.name + ".partial.json")
        self.header, self.identity = header, identity
        self.started_empty, self.rows_added = False, 0

    def open(self) -> set[str]:
        """Start or resume; returns the keys already scored."""
        try:
            resumable = json.loads(self.record.read_text()) == self.identity and self.partial.is_file()
        except (OSError, ValueError):
            resumable = False
        if not resumable:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            with open(self.partial, "w", encoding="utf-8", newline="") as f:
                csv.writer(f, lineterminator="\n").writerow(self.header)
            write_json_atomic(self.record, self.identity)
            self.started_empty = True
            return set()
        data = self.partial.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a run killed mid-line leaves a partial last row
        if len(complete) != len(data):
            with open(self.partial, "r+b") as f:
                f.truncate(len(complete))
        return {row[0] for row in list(csv.reader(io.StringIO(complete.decode())))[1:] if row}

    def append(self, rows: list[list]) -> None:
        with open(self.partial, "a", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
        self.rows_added += len(rows)

    def abandon(self) -> None:
        """After a failure: a file this run started and wrote no row into goes (nothing to resume);
        rows scored before the failure stay for the rerun."""
        if self.started_empty and not self.rows_added:
            self.partial.unlink(missing_ok=True)
            self.record.unlink(missing_ok=True)

    def finish(self) -> None:
        os.replace(self.partial, self.path)
        self.record.unlink(missing_ok=True)


def probability_text(p: float) -> str:
    """`p` with 6 significant digits of both p and 1 - p: the most confident candidates of a search
    (1 - p of 1e-7 and 1e-9) stay apart in the file, where 6 digits of p alone would write both as 1."""
    q = 1.0 - p
    if not math.isfinite(p) or p < 0.5 or q <= 0.0:
        return f"{p:.6g}"
    decimals = min(16, 5 - math.floor(math.log10(q)))
    return f"{p:.{decimals}f}".rstrip("0").rstrip(".")


def _is_fits(path: Path) -> bool:
    """A FITS file (plain or gzipped) rather than a list of file names, by its first bytes."""
    with open(path, "rb") as f:
        start = f.read(9)
    return start.startswith((b"SIMPLE  =", b"\x1f\x8b"))


def _model_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def predict_lens(input_path: str, model_file: str, out_csv: str | None = None, device: str = "auto",
                 batch_size: int = 256, workers: int = 1, shard: tuple[int, int] | None = None,
                 tta: bool | int = True, progress: bool = True) -> np.ndarray:
    """Lens probability per scene of a folder (challenge layout or cutouts) or a list of files, or of one scene file.

    `tta` as in `lensml.inference.view_count`: each scene's logit is averaged over its 8 D4 views by default.
    """
    views = view_count(tta)
    dev = resolve_device(device)
    net, info = load_model(model_file, dev)
    net.eval()
    path = Path(input_path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file or folder")
    if path.is_file() and _is_fits(path):
        p, _ = lens_probabilities(net, torch.from_numpy(model_input(info, str(path), None)), dev, temperature(info),
                                  views)
        report(f"p_lens = {p[0]:.5f}")
        return p
    if path.is_dir() and not is_lens_folder(path):
        raise BadInputError(f"{path}: neither a challenge folder (Public/) nor a folder of FITS cutouts; name a "
                            "folder, a list of files or an image")
    scenes = scene_list(path, info)
    first = scenes.folder.read(scenes.keys[0]) if scenes.folder else read_lens_scene(scenes.root / scenes.keys[0])
    check_data_fits(info, first.shape, scenes.folder.survey if scenes.folder else CUTOUTS,
                    f"{path} ({scenes.keys[0]})", str(model_file))
    keys = scenes.keys if shard is None else scenes.keys[shard[0] - 1 :: shard[1]]
    labels = _labels(scenes, keys)
    header = [scenes.key_name, "p_lens", *(["is_lens"] if labels else [])]
    sink = None
    if out_csv:
        scene_digest = hashlib.sha256("\n".join(map(str, keys)).encode()).hexdigest()
        identity = {"model_sha256": _model_digest(model_path(model_file)), "input": str(path.resolve()),
                    "scenes_sha256": scene_digest, "shard": list(shard) if shard else None, "header": header,
                    "views": views}
        sink = ResumableCsv(out_csv, header, identity)
        done = sink.open()
        if done:
            report(f"{sink.partial}: {len(done)} scenes already scored; going on with the rest")
            keys = [k for k in keys if str(k) not in done]
    try:
        scores, printed = _stream(net, info, scenes, keys, labels, dev, batch_size, workers, sink, views, progress)
    except BaseException:
        if sink is not None:
            sink.abandon()
        raise
    if sink is not None:
        sink.finish()
    else:
        report(format_table(header, printed))
    return scores


def _labels(scenes: SceneList, keys: list) -> dict | None:
    """Key (as text) -> is_lens, when the folder has labels."""
    if scenes.folder is None:
        return None
    labels = scenes.folder.labels(keys, need=False)
    return None if labels is None else {str(k): int(v) for k, v in zip(keys, labels)}


@torch.inference_mode()
def _stream(net, info: ModelInfo, scenes: SceneList, keys: list, labels: dict | None, dev: torch.device,
            batch_size: int, workers: int, sink: ResumableCsv | None, views: int, progress: bool):
    loader = torch.utils.data.DataLoader(
        _Batches(scenes, keys, batch_size, info.norm), batch_size=None, num_workers=workers,
        prefetch_factor=2 if workers else None, persistent_workers=False,
    )
    started, forward, out, printed = time.perf_counter(), 0.0, [], []
    bar = tqdm(total=len(keys), desc="predict", unit="img", disable=not progress, leave=False)
    for batch_keys, x in loader:
        if isinstance(x, LensmlError):
            raise x
        p, seconds = lens_probabilities(net, x, dev, temperature(info), views)
        forward += seconds
        rows = [[k, float(v), *([labels[str(k)]] if labels else [])] for k, v in zip(batch_keys, p)]
        if sink is not None:  # the file keeps 6 significant digits of p and of 1 - p, the terminal table 4 decimals
            sink.append([[k, probability_text(v), *rest] for k, v, *rest in rows])
        else:
            printed += rows
        out.append(p)
        bar.update(len(batch_keys))
    bar.close()
    elapsed = time.perf_counter() - started
    n = len(keys)
    if n:
        report(f"scored {n} images in {elapsed:.1f}s: {n / elapsed:.1f} images/s, forward passes "
              f"{forward / n * 1e3:.3f} ms/image ({views} view{'s' if views > 1 else ''}) on {device_name(dev)}")
    return (np.concatenate(out) if out else np.zeros(0)), printed
