"""`lensml evaluate` and `lensml predict` for shear models, with HSM as the classical baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from ..baselines.hsm import ensemble_shear, hsm_measure, per_galaxy_shear
from ..data.inputs import model_input
from ..data.stamps import load_stamps
from ..data.transforms import normalise
from ..errors import BadInputError
from ..inference import predict_array, view_count
from ..io.atomic import write_json_atomic
from ..io.manifest import Manifest, read_manifest
from ..io.tables import format_table, write_csv
from ..metrics.shear import paired_shear_bias, rmse, shear_metrics
from ..modelfile import ModelInfo, load_model
from ..plots import plot_shear_scatter
from ..device import resolve_device
from ..identity import held_out, manifest_identity
from ..report import report

SHEAR = ("g1", "g2")
MIN_STAMPS = 3  # a straight-line fit with standard errors


def _require_shear(info: ModelInfo, model_file: str) -> None:
    if info.task != "shear":
        raise BadInputError(f"{model_file} is a {info.task} model; a data.json needs a shear model")


def _shear_columns(info: ModelInfo) -> list[int] | None:
    """Where g1 and g2 are among the model's targets; None if it does not predict both."""
    return [info.targets.index(g) for g in SHEAR] if set(SHEAR) <= set(info.targets) else None


def _stamp_channels(manifest: Manifest, info: ModelInfo, indices: list[int], with_psf: bool, progress: bool,
                    plain: bool = True):
    """Raw galaxy (and PSF) stamps once, plus the model's normalised input built from them (None for
    a metacal model, which only ever sees metacal images, or when the `plain` input is not wanted)."""
    keys = list(dict.fromkeys(["galaxy", *(["psf"] if with_psf else []), *info.inputs]))
    raw = load_stamps(manifest, keys, "none", indices=indices, shape=info.image_size, progress=progress)
    wanted = plain and not info.metacal
    x = normalise(raw[:, [keys.index(k) for k in info.inputs]], info.norm) if wanted else None
    return raw, keys, x


def evaluate_shear(
    manifest_path: str | Sequence[str],
    model_file: str,
    device: str = "auto",
    batch_size: int = 256,
    tta: bool | int = True,
    hsm: str | None = "REGAUSS",
    json_path: str | None = None,
    plot_path: str | None = None,
    progress: bool = True,
    anacal: bool = False,
    metacal: bool = False,
) -> dict[str, Any]:
    """Score a model on a data.json beside HSM (and AnaCal); print the table, write JSON and plot on request.

    Several data.json sets (e.g. paired sets drawn with different seeds, on different machines) are
    scored as one: their pair and base-galaxy IDs are renumbered so the sets never share one, and m and
    c come from all the pairs together, as if the sets had been drawn as one.
    """
    paths = [manifest_path] if isinstance(manifest_path, (str, Path)) else list(manifest_path)
    dev = resolve_device(device)
    net, info = load_model(model_file, dev)
    _require_shear(info, model_file)
    metacal = metacal or info.metacal
    sets = [_scored_set(path, info) for path in paths]
    n_total = sum(len(indices) for _, indices, _ in sets)
    if n_total < MIN_STAMPS:
        raise BadInputError(f"{', '.join(str(m.path) for m, _, _ in sets)}: {n_total} stamps to score; m and c need "
                            f"at least {MIN_STAMPS}")
    with_psf = all("psf" in manifest.entries[i] for manifest, indices, _ in sets for i in indices)
    with_hsm = hsm is not None and with_psf
    for wanted, name in ((anacal, "AnaCal"), (metacal, "metacalibration")):
        if wanted and not with_psf:
            raise BadInputError(f"{sets[0][0].path}: {name} needs each stamp's PSF image (a 'psf' entry)")
    shear_cols = _shear_columns(info)
    designs = (_renumbered([paired_design(m, indices) for m, indices, _ in sets], sets)
               if shear_cols is not None else None)
    found = _joined([_per_stamp_estimates(net, info, manifest, indices, designs[k] if designs else None, dev,
                                          batch_size, tta, progress,
                                          hsm=hsm if with_hsm and shear_cols is not None else None,
                                          anacal=anacal and shear_cols is not None,
                                          metacal=metacal and shear_cols is not None,
                                          with_psf=with_hsm or anacal or metacal)
                     for k, (manifest, indices, _) in enumerate(sets)])
    design = _joined(designs) if designs else None
    pred = found["network"]
    true = np.concatenate([manifest.targets(info.targets, indices) for manifest, indices, _ in sets])

    def one_or_all(values: list) -> Any:
        return values[0] if len(values) == 1 else values

    results: dict[str, Any] = {"model": str(model_file), "arch": info.arch,
                               "data": one_or_all([str(m.path) for m, _, _ in sets]),
                               "subset": one_or_all([subset for _, _, subset in sets]),
                               "tta": tta, "views": view_count(tta), "calibration": info.calibration}
    results.update(_metrics(info.targets, true, pred))
    estimates = {info.arch: pred[:, shear_cols]} if shear_cols is not None else {}
    if design is not None:
        results["paired"] = paired_shear_bias(pred[:, shear_cols], **design)
    if "hsm" in found:
        measured = found["hsm"]
        g_hsm = per_galaxy_shear(measured, hsm)
        failures = int((~np.isfinite(g_hsm).all(axis=1)).sum())
        ok = len(g_hsm) - failures >= MIN_STAMPS
        results["hsm"] = {"method": hsm, "failures": failures,
                          **(shear_metrics(true[:, shear_cols], g_hsm) if ok else {"n": len(g_hsm) - failures})}
        if design is not None:
            g_ensemble, responsivity = ensemble_shear(measured, hsm)
            results["hsm"]["paired"] = {**paired_shear_bias(g_ensemble, **design), "responsivity": responsivity}
        estimates[f"HSM {hsm}"] = g_hsm
    if "metacal" in found:
        results["metacal"] = _metacal_results(*found["metacal"], true[:, shear_cols], design)
        estimates[f"{info.arch} metacal"] = results["metacal"].pop("per_stamp")
    if "anacal" in found:
        results["anacal"] = _anacal_results(*found["anacal"], true[:, shear_cols], design)
        estimates["AnaCal"] = results["anacal"].pop("per_stamp")
    for manifest, indices, subset in sets:
        report(f"{manifest.path}: scored {len(indices)} stamps ({subset})")
        if info.calibration.get("sha256") == manifest.sha256:
            report("note: this set calibrated the model, so m is zero by construction here; evaluate on an "
                   "independent set")
    if len(sets) > 1:
        report(f"{len(sets)} sets scored as one: {n_total} stamps")
    report(_results_table(results, info))
    if design is not None:
        report(_paired_table(results, info))
    if json_path:
        write_json_atomic(json_path, results)
    if plot_path and shear_cols is not None:
        plot_shear_scatter(plot_path, true[:, shear_cols], estimates)
    return results


def _scored_set(path: str | Path, info: ModelInfo) -> tuple[Manifest, list[int], str]:
    """A data.json, the entries of it to score (the held-out part if the model was trained on it), and which."""
    manifest = read_manifest(path, required=info.targets)
    rows, subset = held_out(info, manifest_identity(manifest), "entries")
    return manifest, rows.tolist(), subset


def _joined(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-set results (arrays, tuples of arrays, or equal scalars) joined along the stamps."""
    out: dict[str, Any] = {}
    for name, first in parts[0].items():
        values = [p[name] for p in parts]
        if isinstance(first, tuple):
            out[name] = tuple(np.concatenate(columns) for columns in zip(*values))
        elif isinstance(first, np.ndarray):
            out[name] = np.concatenate(values)
        else:
            out[name] = first
    return out


def _metacal_results(g: np.ndarray, r: np.ndarray, true: np.ndarray, design: dict[str, Any] | None) -> dict[str, Any]:
    """The network metacalibrated: per-stamp g / <R> against the truth, and the paired m and c with R per stamp."""
    mean_r = r.mean(0)
    out: dict[str, Any] = {"per_stamp": g / np.diag(mean_r), "response_mean": mean_r.tolist(),
                           **shear_metrics(true, g / np.diag(mean_r))}
    if design is not None:
        out["paired"] = paired_shear_bias(g, **design, response=r)
    return out


def _noise_sigmas(manifest: Manifest, indices: list[int]) -> np.ndarray:
    """Each stamp's recorded pixel noise (`noise_sigma`, written for paired sets), 0 where none is recorded."""
    return np.array([manifest.entries[i].get("noise_sigma", 0.0) for i in indices], dtype=float)


EVAL_CHUNK_STAMPS = 8192  # stamps read and measured at a time: memory stays flat for sets of any size


def _per_stamp_estimates(net, info: ModelInfo, manifest: Manifest, indices: list[int], design: dict[str, Any] | None,
                         device, batch_size: int, tta: bool | int, progress: bool, hsm: str | None, anacal: bool,
                         metacal: bool, with_psf: bool, plain: bool = True) -> dict[str, Any]:
    """Every estimator's per-stamp output on the scored stamps, read and measured EVAL_CHUNK_STAMPS at a time.

    "network": the model's answer (N, targets) (for a metacal model, its g on the noshear images), unless
    not `plain`;
    "metacal": g (N, 2) and R (N, 2, 2); "hsm": HSM's (N, 2); "anacal": e (N, 2) and R (N, 2). The
    correction noise of stamp i is keyed by its pair (paired design) or its position in `indices`, so
    the result does not depend on the chunking.
    """
    from ..baselines.anacal import anacal_kernel_arcsec, anacal_shear
    from ..io.fits import read_fits_header_value
    from ..shear.network_metacal import network_metacal

    n = len(indices)
    keys = design["pair"] if design is not None else np.arange(n)
    sigma = _noise_sigmas(manifest, indices)
    shear_cols = _shear_columns(info)
    parts: dict[str, list] = {}
    kernel_arcsec = pixel_scale = None
    chunks = [slice(start, min(start + EVAL_CHUNK_STAMPS, n)) for start in range(0, n, EVAL_CHUNK_STAMPS)]
    inner_progress = progress and len(chunks) == 1
    for part in tqdm(chunks, desc="score", unit="chunk", disable=not progress or len(chunks) == 1, leave=False):
        raw, channels, x = _stamp_channels(manifest, info, indices[part], with_psf, inner_progress, plain)
        galaxies = raw[:, channels.index("galaxy")]
        psfs = raw[:, channels.index("psf")] if with_psf else None
        if metacal:
            g, r = network_metacal(net, info, galaxies, psfs, device, noise_sigma=sigma[part] if sigma.any() else None,
                                   noise_keys=keys[part], batch_size=batch_size, tta=tta, progress=inner_progress)
            parts.setdefault("metacal_g", []).append(g)
            parts.setdefault("metacal_r", []).append(r)
        if plain and info.metacal:  # a metacal model has only seen metacal images: its plain answer is on the noshear one
            pred = np.empty((len(galaxies), len(info.targets)))
            pred[:, shear_cols] = g
            parts.setdefault("network", []).append(pred)
        elif plain:
            parts.setdefault("network", []).append(predict_array(net, info, x, device, batch_size, tta, inner_progress))
        if hsm is not None:
            parts.setdefault("hsm", []).append(hsm_measure(galaxies, psfs, hsm, progress=inner_progress))
        if anacal:
            if kernel_arcsec is None:  # one kernel for the whole set, from its first PSF
                pixel_scale = read_fits_header_value(manifest.image_path(indices[0], "galaxy"), "PIXSCALE", 1.0)
                kernel_arcsec = anacal_kernel_arcsec(psfs[0], pixel_scale)
            e, r = anacal_shear(galaxies, psfs, pixel_scale, sigma[part], noise_seeds=keys[part],
                                progress=inner_progress, sigma_shapelets=kernel_arcsec)
            parts.setdefault("anacal_e", []).append(e)
            parts.setdefault("anacal_r", []).append(r)
    joined = {name: np.concatenate(arrays) for name, arrays in parts.items()}
    found: dict[str, Any] = {name: joined[name] for name in ("network", "hsm") if name in joined}
    for name, first, second in (("metacal", "metacal_g", "metacal_r"), ("anacal", "anacal_e", "anacal_r")):
        if first in joined:
            found[name] = (joined[first], joined[second])
    return found


def _anacal_results(e: np.ndarray, r: np.ndarray, true: np.ndarray, design: dict[str, Any] | None) -> dict[str, Any]:
    """AnaCal on the same stamps: per-stamp e / <R> against the truth, and the paired m and c with R per stamp."""
    from ..baselines.anacal import response_matrix

    ok = np.isfinite(e).all(1) & np.isfinite(r).all(1)
    per_stamp = e / r[ok].mean(0)
    out: dict[str, Any] = {"failures": int((~ok).sum()), "per_stamp": per_stamp,
                           **shear_metrics(true, per_stamp)}
    if design is not None:
        out["paired"] = paired_shear_bias(e, **design, response=response_matrix(r))
    return out


def _metrics(targets: list[str], true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {"n": len(true)}
    if set(SHEAR) <= set(targets):
        cols = [targets.index(g) for g in SHEAR]
        out.update(shear_metrics(true[:, cols], pred[:, cols]))
    for k, name in enumerate(targets):
        out.setdefault(f"rmse_{name}", rmse(true[:, k], pred[:, k]))
    return out


def _results_table(results: dict[str, Any], info: ModelInfo) -> str:
    rows = []
    baselines = [(f"HSM {results['hsm']['method']}", results["hsm"])] if "hsm" in results else []
    baselines += [("AnaCal", results["anacal"])] if "anacal" in results else []
    baselines += [(f"{info.arch} metacal", results["metacal"])] if "metacal" in results else []
    for label, r in [(info.arch, results), *baselines]:
        row = [label, r["n"], r.get("failures", 0)]
        row += [r.get(f"rmse_{t}", float("nan")) for t in SHEAR]
        row += [f"{r[k]:+.4f} ± {r[k + '_err']:.4f}" if k in r else "-" for k in ("m1", "m2", "c1", "c2")]
        rows.append(row)
    return format_table(["estimator", "n", "failed", "rmse_g1", "rmse_g2", "m1", "m2", "c1", "c2"], rows)


PAIR_KEYS = ("pair", "sign", "component", "base")


def paired_design(manifest: Manifest, indices: list[int]) -> dict[str, Any] | None:
    """The paired design of the scored entries (`simulate weak --pairs`), or None for an ordinary set.

    Every pair must have one + and one - member among them: a missing partner is an error naming it.
    """
    entries = [manifest.entries[i] for i in indices]
    if not all(all(k in e for k in PAIR_KEYS) for e in entries):
        return None
    columns = {k: np.array([e[k] for e in entries]) for k in PAIR_KEYS}
    shears = {abs(e[f"g{e['component']}"]) for e in entries}
    if len(shears) != 1:
        raise BadInputError(f"{manifest.path}: paired entries with different |g| ({', '.join(map(str, sorted(shears)))})")
    for sign in (1, -1):
        have = set(columns["pair"][columns["sign"] == sign].tolist())
        lacking = sorted(set(columns["pair"].tolist()) - have)
        if lacking:
            member = next(e["galaxy"] for e in entries if e["pair"] == lacking[0])
            raise BadInputError(f"{manifest.path}: pair {lacking[0]} ({member}) has no {'+-'[sign < 0]}g partner "
                                f"({len(lacking)} pairs lack one); score whole pairs")
    counts = np.unique(columns["pair"], return_counts=True)[1]
    if counts.max() > 2:
        raise BadInputError(f"{manifest.path}: a pair has {counts.max()} members; each pair has one +g and one -g stamp")
    return {**columns, "pair_shear": shears.pop()}


def _renumbered(designs: list[dict[str, Any] | None], sets: list[tuple[Manifest, list[int], str]]
                ) -> list[dict[str, Any]] | None:
    """The sets' paired designs with pair and base-galaxy IDs made distinct across sets (the first set's
    kept as they are, each next one's following the previous one's), or None for ordinary sets."""
    if all(d is None for d in designs):
        return None
    for d, (manifest, _, _) in zip(designs, sets):
        if d is None:
            raise BadInputError(f"{manifest.path}: not a paired set (no {', '.join(PAIR_KEYS)} entries), unlike "
                                "the others; score paired and ordinary sets apart")
    shears = sorted({d["pair_shear"] for d in designs})
    if len(shears) > 1:
        raise BadInputError(f"the sets' pairs have different |g| ({', '.join(map(str, shears))}); score them apart")
    out: list[dict[str, Any]] = []
    next_id = {"pair": 0, "base": 0}
    for d in designs:
        shift = {k: (next_id[k] - int(d[k].min()) if out else 0) for k in next_id}
        out.append({**d, **{k: d[k] + shift[k] for k in shift}})
        next_id = {k: int(out[-1][k].max()) + 1 for k in next_id}
    return out


def _paired_table(results: dict[str, Any], info: ModelInfo) -> str:
    rows = []
    rows_in = [(info.arch, results.get("paired"))]
    if "paired" in results.get("hsm", {}):
        hsm = results["hsm"]
        rows_in.append((f"HSM {hsm['method']} (responsivity {hsm['paired']['responsivity']:.3f})", hsm["paired"]))
    if "paired" in results.get("metacal", {}):
        r = results["metacal"]["response_mean"]
        rows_in.append((f"{info.arch} metacal (<R> {r[0][0]:.3f}, {r[1][1]:.3f})", results["metacal"]["paired"]))
    if "paired" in results.get("anacal", {}):
        rows_in.append(("AnaCal (analytic response)", results["anacal"]["paired"]))
    for label, r in rows_in:
        rows.append([label, r["n_pairs"], r["n_galaxies"],
                     *(f"{r[k]:+.5f} ± {r[k + '_err']:.5f}" for k in ("m1", "m2", "c1", "c2")),
                     f"{r['sigma_g1']:.3f}, {r['sigma_g2']:.3f}"])
    return "paired design (bootstrap errors over galaxies):\n" + format_table(
        ["estimator", "pairs", "galaxies", "m1", "m2", "c1", "c2", "noise per galaxy"], rows)


def predict_shear(
    input_path: str,
    model_file: str,
    psf: str | None = None,
    out_csv: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    tta: bool | int = True,
    progress: bool = True,
    metacal: bool = False,
) -> np.ndarray:
    """Predict on a data.json (table beside the truth, summary metrics) or on one image.

    With `metacal`, on a data.json: per stamp g1, g2 and the response R11, R12, R21, R22 measured on
    its counterfactual images (N, 6); the ensemble shear is <g> / <R>.
    """
    dev = resolve_device(device)
    net, info = load_model(model_file, dev)
    _require_shear(info, model_file)
    path = Path(input_path)
    if metacal or info.metacal:
        return _predict_metacal(path, net, info, dev, out_csv, batch_size, tta, progress, psf)
    if path.is_dir() or path.suffix.lower() == ".json":
        return _predict_manifest(path, net, info, dev, out_csv, batch_size, tta, progress)
    x = model_input(info, str(path), psf)
    pred = predict_array(net, info, x, dev, batch_size, tta)
    report("  ".join(f"{t} = {v:+.5f}" for t, v in zip(info.targets, pred[0])))
    if out_csv:
        write_csv(out_csv, ["image", *info.targets], [[str(path), *pred[0].tolist()]])
    return pred


def _predict_metacal(path, net, info, dev, out_csv, batch_size, tta, progress, psf: str | None) -> np.ndarray:
    if not (path.is_dir() or path.suffix.lower() == ".json"):
        return _predict_metacal_image(path, psf, net, info, dev, out_csv, tta)
    manifest = read_manifest(path)
    indices = list(range(len(manifest)))
    if not all("psf" in e for e in manifest.entries):
        raise BadInputError(f"{manifest.path}: metacalibration needs each stamp's PSF image (a 'psf' entry)")
    found = _per_stamp_estimates(net, info, manifest, indices, paired_design(manifest, indices), dev, batch_size, tta,
                                 progress, hsm=None, anacal=False, metacal=True, with_psf=True, plain=False)
    g, r = found["metacal"]
    out = np.concatenate([g, r.reshape(-1, 4)], axis=1)
    header = ["index", "galaxy", "g1", "g2", "R11", "R12", "R21", "R22"]
    rows = [[i, e["galaxy"], *out[i].tolist()] for i, e in enumerate(manifest.entries)]
    if out_csv:
        write_csv(out_csv, header, rows)
        report(f"wrote {len(rows)} metacalibrated predictions to {out_csv}")
    else:
        report(format_table(header, rows))
    mean_r = r.mean(0)
    report(f"ensemble shear <g>/<R>: g1 = {g[:, 0].mean() / mean_r[0, 0]:+.5f}, g2 = {g[:, 1].mean() / mean_r[1, 1]:+.5f} "
           f"(<R11> = {mean_r[0, 0]:.4f}, <R22> = {mean_r[1, 1]:.4f})")
    return out


def _predict_metacal_image(path: Path, psf: str | None, net, info: ModelInfo, dev, out_csv: str | None,
                           tta: bool | int) -> np.ndarray:
    """g1, g2 and R of one stamp, from its metacal images (no noise correction: its noise is not known)."""
    from ..io.images import read_image
    from ..shear.network_metacal import network_metacal

    if psf is None:
        raise BadInputError("metacalibration also needs the stamp's PSF image: add --psf PSF.fits")
    galaxy, psf_image = read_image(str(path)), read_image(psf)
    if galaxy.shape != info.image_size:
        raise BadInputError(f"{path}: stamp is {galaxy.shape[0]}x{galaxy.shape[1]}, the model expects "
                            f"{info.image_size[0]}x{info.image_size[1]}")
    g, r = network_metacal(net, info, galaxy[None], psf_image[None], dev, tta=tta)
    out = np.concatenate([g, r.reshape(-1, 4)], axis=1)
    names = ["g1", "g2", "R11", "R12", "R21", "R22"]
    report("  ".join(f"{k} = {v:+.5f}" for k, v in zip(names, out[0])) + "  (one galaxy's g; a shear is <g> / <R>)")
    if out_csv:
        write_csv(out_csv, ["image", *names], [[str(path), *out[0].tolist()]])
    return out


def _predict_manifest(path, net, info, dev, out_csv, batch_size, tta, progress) -> np.ndarray:
    manifest = read_manifest(path)
    x = load_stamps(manifest, info.inputs, info.norm, shape=info.image_size, progress=progress)
    pred = predict_array(net, info, x, dev, batch_size, tta, progress)
    known = [t for t in info.targets if all(t in e for e in manifest.entries)]
    header = ["index", "galaxy", *info.targets, *(f"{t}_true" for t in known)]
    rows = [[i, e["galaxy"], *pred[i].tolist(), *(e[t] for t in known)] for i, e in enumerate(manifest.entries)]
    if out_csv:
        write_csv(out_csv, header, rows)
        report(f"wrote {len(rows)} predictions to {out_csv}")
    else:
        report(format_table(header, rows))
    if known and len(rows) >= MIN_STAMPS:
        true = manifest.targets(known)
        summary = _metrics(known, true, pred[:, [info.targets.index(t) for t in known]])
        report(json.dumps(summary, indent=1))
    return pred
