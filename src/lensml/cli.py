"""The `lensml` command: parse arguments, call one function per subcommand, report errors in one line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn, Sequence

from . import __version__
from .errors import BadInputError, LensmlError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {value}")
    return value


def _add_common_model_flags(p: argparse.ArgumentParser, several: bool = False) -> None:
    p.add_argument("-m", "--model", required=True, nargs="+" if several else None,
                   help="model file(s) (the .safetensors extension may be left out)")
    p.add_argument("--device", help="auto (default: GPU when present), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=_positive_int, help="images per forward pass (default 256)")
    p.add_argument("--tta", dest="tta", action="store_const", const=True, default=None,
                   help="average over the 8 rotated/flipped views of each stamp or scene (the default)")
    p.add_argument("--no-tta", dest="tta", action="store_const", const=False,
                   help="the network's single answer, 8x fewer forward passes (for shear not equivariant: an additive bias "
                        "remains; for lens finders a lower AUC)")
    p.add_argument("--views", dest="tta", type=int, choices=VIEW_COUNTS,
                   help="views averaged: 8 (all, the default), 4 rotations, 2 (0 and 90 degrees: for shear enough "
                        "to cancel a constant additive bias, 4x faster), 1")


VIEW_COUNTS = (1, 2, 4, 8)


def _add_evaluate_flags(p: argparse.ArgumentParser) -> None:
    _add_common_model_flags(p, several=True)
    p.add_argument("--hsm", choices=("REGAUSS", "KSB", "BJ", "LINEAR", "none"),
                   help="shear: classical estimator to compare with (default REGAUSS)")
    p.add_argument("--metacal", action="store_const", const=True, default=None,
                   help="shear: also the network metacalibrated: its response measured on 4 counterfactual images")
    p.add_argument("--anacal", action="store_const", const=True, default=None,
                   help="shear: also AnaCal on the same stamps (the lensml[baselines] extra)")
    p.add_argument("--prevalence", type=float,
                   help="lenses: share of cutouts holding a lens in the survey, for purity and completeness "
                        "(default 1e-3)")
    p.add_argument("--min-lensed-pixels", type=int, metavar="N",
                   help="lenses: score only lenses whose arcs exceed 1 sigma in N or more pixels (the catalogue's "
                        "numb_pix_lensed_image); every non-lens stays")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--plot", help="draw measured against true shear, or the ROC curves, to this PNG")


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line reported as every other one: one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"lensml: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lensml", description="Deep learning on gravitational lensing images.")
    parser.add_argument("--version", action="version", version=f"lensml {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--survey-file", action="append", default=[], metavar="FILE",
                        help="YAML file describing a survey (bands, pixel scale, ...); may be given several times")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sim = sub.add_parser("simulate", help="make training data").add_subparsers(dest="kind", metavar="KIND", required=True)
    weak = sim.add_parser("weak", help="GalSim galaxy + PSF stamps in LensNet's layout (data.json)",
                          description="Simulate sheared, PSF-convolved galaxy stamps and their PSFs. "
                                      "Defaults reproduce LensNet's distribution; every option below overrides it.")
    weak.add_argument("-n", "--number", type=_positive_int, required=True, help="number of galaxy/PSF pairs")
    weak.add_argument("-o", "--output", required=True, help="output folder")
    weak.add_argument("--preset", default="lensnet", help="starting distribution (default: lensnet)")
    weak.add_argument("--config", help="YAML/JSON file of simulation settings (see docs/formats.md)")
    weak.add_argument("--seed", type=_nonneg_int, default=0, help="global seed; stamp i draws from (seed, i)")
    weak.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    weak.add_argument("--shard", help="K/N: draw only shard K of N (then `lensml simulate merge -o DIR`)")
    weak.add_argument("--tif", action="store_true", help="also write 8-bit TIFF copies (gal_<i>.tif, psf_<i>.tif)")
    weak.add_argument("--noise", action="store_true", default=None, help="add Poisson sky noise scaled to --snr")
    weak.add_argument("--snr", type=float, nargs="+", metavar="S", help="SNR, or a low and high value drawn uniformly")
    weak.add_argument("--stamp-size", type=_positive_int, help="stamp side in pixels (default 40)")
    weak.add_argument("--pixel-scale", type=float, help="arcsec per pixel (default 1)")
    weak.add_argument("--psf", dest="psf_profile", choices=("moffat", "gaussian"), help="PSF profile")
    weak.add_argument("--psf-fwhm", type=float, nargs="+", metavar="F",
                      help="PSF FWHM in arcsec, or a low and high value drawn per stamp (default 2.85)")
    weak.add_argument("--psf-beta", type=float, nargs="+", metavar="B", help="Moffat beta, or a range (default 3)")
    weak.add_argument("--psf-e-max", type=float, help="PSF distortion e1, e2 each in [-max, max] (default 0.04)")
    weak.add_argument("--profile", dest="galaxy_profile", choices=("exponential", "devaucouleurs", "sersic"),
                      help="galaxy light profile")
    weak.add_argument("--sersic-n", type=float, nargs="+", metavar="N", help="Sersic index, or a low and high value")
    weak.add_argument("--hlr", type=float, nargs="+", metavar="R", help="half-light radius in arcsec, or a range "
                      "(default 0.98 x the PSF's)")
    weak.add_argument("--e-int-sigma", type=float, help="intrinsic ellipticity spread (0: round galaxies)")
    weak.add_argument("--shear-max", type=float, help="g1, g2 each in [-max, max] (default 0.4)")
    weak.add_argument("--shift-radius", type=float, help="centroid offset, uniform in a disc of this radius in "
                      "pixels (default 1)")
    weak.add_argument("--pairs", action="store_true",
                      help="paired ring design for m and c: -n base galaxies, each at --ring orientations and "
                           "sheared by +/- --pair-shear with shared noise (2 x ring stamps per galaxy)")
    weak.add_argument("--ring", type=_positive_int, default=4, help="orientations per base galaxy (default 4)")
    weak.add_argument("--pair-shear", type=float, default=0.02, help="|g| of a pair (default 0.02)")
    weak.set_defaults(run=_run_simulate_weak)

    strong = sim.add_parser("strong", help="lensed and non-lensed scenes in the Lens Finding Challenge layout",
                            description="Simulate scenes of any survey of the registry (`lensml surveys`) with a "
                                        "batched torch ray-tracer, written as the challenge distributes its data.")
    strong.add_argument("--survey",
                        help="a survey of the registry (`lensml surveys`: space, ground, euclid, lsst, hsc, des) "
                             "or one described by --survey-file")
    strong.add_argument("--backgrounds", metavar="DIR",
                        help="paint arcs into the real cutouts of DIR (challenge layout): each gives an injected "
                             "lens and an untouched copy as a non-lens; -n takes the first n (default all)")
    strong.add_argument("--sources", nargs="?", const="hdf", metavar="PATH",
                        help="real source morphologies: a folder of FITS cutouts or a FITS cube; alone, the "
                             "galaxies of the Hubble eXtreme Deep Field that scikit-image ships (shapes only)")
    strong.add_argument("--image-size", type=_positive_int, nargs="+", metavar="N",
                        help="cutout size in pixels: N, or ROWS COLUMNS (default: the survey's)")
    strong.add_argument("-n", "--number", type=_positive_int, help="number of scenes")
    strong.add_argument("-o", "--output", required=True, help="output folder")
    strong.add_argument("--lens-fraction", type=float, default=0.5, help="share of lenses (default 0.5)")
    strong.add_argument("--seed", type=_nonneg_int, default=0, help="global seed; scene ID draws from (seed, ID)")
    strong.add_argument("--workers", type=_positive_int, default=1, help="processes (each renders whole batches)")
    strong.add_argument("--shard", help="K/N: render only shard K of N (see `lensml simulate merge`)")
    strong.add_argument("--config", help="YAML/JSON file of survey settings to override")
    strong.add_argument("--first-id", type=_nonneg_int, default=100000, help="ID of the first scene")
    strong.add_argument("--catalogue", action="store_true", help="also write <survey>_image_catalog.csv (test-set form)")
    strong.add_argument("--device", default="cpu", help="render on cpu (default), auto, cuda or cuda:N")
    strong.set_defaults(run=_run_simulate_strong)

    merge = sim.add_parser("merge", help="check that the shards of a simulation are complete; write its data.json or CSV")
    merge.add_argument("-o", "--output", required=True, help="the folder the shards were written to")
    merge.add_argument("--catalogue", action="store_true", help="also write the image catalogue")
    merge.set_defaults(run=_run_simulate_merge)

    train = sub.add_parser("train", help="train a network on a data.json (shear) or a lens-finding folder (lenses)")
    train.add_argument("-i", "--input", required=True, help="data.json (or its folder), or a lens-finding folder (challenge layout or FITS cutouts)")
    train.add_argument("-m", "--model", required=True, help="model file to create or go on training")
    train.add_argument("--arch", help="architecture (`lensml models`); default shear_net or cmu_deeplens")
    train.add_argument("--config", help="settings file; LensNet's config.json is accepted")
    train.add_argument("--epochs", type=_positive_int, help="total epochs to reach (a rerun resumes)")
    train.add_argument("--patience", type=_positive_int,
                       help="stop when the validation loss has not improved for this many epochs (--epochs stays the cap)")
    train.add_argument("--batch-size", type=_positive_int,
                       help="images per optimiser step (default 32 shear, 64 lens finding)")
    train.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                       help="automatic mixed precision, float32 weights: bf16 (lens finders train 1.8-2.4x as fast as "
                            "fp32 on a CPU with native bfloat16, AVX512-BF16 or AMX), or fp16 with loss scaling (GPUs); "
                            "default fp32")
    train.add_argument("--compile", action="store_const", const=True, default=None,
                       help="torch.compile the training step: fuses BatchNorm and activations, 1.2x faster on a CPU "
                            "for cmu_deeplens, wsi_net and shear_net (not cas_swinburne or lens_finder); "
                            "the first batches take a minute or so")
    train.add_argument("--lr", type=float, help="learning rate (Adam)")
    train.add_argument("--loss", choices=("mse", "mae"), help="shear: squared (default) or absolute error")
    train.add_argument("--targets", nargs="+", help="data.json keys to learn (default g1 g2)")
    train.add_argument("--val-fraction", type=float, help="share held out for validation (default 0.1 shear, 0.2 lens)")
    train.add_argument("--seed", type=_nonneg_int,
                       help="seeds the weights, the validation split, shuffling and augmentation (default 0)")
    train.add_argument("--augment", dest="augment", action="store_const", const=True, default=None,
                       help="lens finding: random flips, rotations, shifts, scaling and shear")
    train.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                       help="shear: switch off the 8 exact rotated/flipped views")
    train.add_argument("--no-calibrate", dest="calibrate", action="store_const", const=False, default=None,
                       help="shear: keep the raw network output (no m, c correction from the validation stamps)")
    train.add_argument("--metacal", action="store_const", const=True, default=None,
                       help="shear: train on each stamp's noshear metacal image (reconvolution PSF, recentred, "
                            "noise-corrected); the model is then always metacalibrated")
    train.add_argument("--width", type=_positive_int,
                       help="shear: channels of the first convolutions (shear_net 16 by default; 8 is 4x cheaper "
                            "and as accurate, see the pretrained shear network)")
    train.add_argument("--target", choices=("shear", "shape"),
                       help="shear: learn the applied g, or the sheared galaxy's ellipticity (mean g; "
                            "default with --metacal)")
    train.add_argument("--norm", choices=("asinh", "zscale", "minmax", "none"),
                       help="lens finding: per-band normalisation (default asinh; zscale, LEXACTUM's, "
                            "saturates arcs on bright deflectors)")
    train.add_argument("--schedule", choices=("cosine", "constant"),
                       help="learning rate over the epochs: cosine decay to 1%% of --lr at --epochs (shear "
                            "default), or constant (lens finding default)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    train.add_argument("-r", "--remove", action="store_true", help="delete the model and its checkpoint, start again")
    train.add_argument("-e", "--evaluate", action="store_true", help="evaluate on the held-out part afterwards")
    train.set_defaults(run=_run_train)

    for name, text in (("evaluate", "score a model: RMSE, m, c beside HSM, or ROC, AUC, TPR0, TPR10"),
                       ("compare", "score several lens finders on one folder: one table, one ROC plot")):
        evaluate = sub.add_parser(name, help=text)
        evaluate.add_argument("-i", "--input", required=True, nargs="+",
                              help="data.json (or its folder), or a lens-finding folder (challenge layout or FITS "
                                   "cutouts); shear: several data.json sets are scored as one")
        _add_evaluate_flags(evaluate)
        evaluate.set_defaults(run=_run_evaluate)

    keras = sub.add_parser("import-keras", help="a Keras .h5 model (LEXACTUM's finders, LensNet's VGG19) as a "
                           "lensml model file")
    keras.add_argument("input", help="the Keras model, saved as HDF5 (.h5)")
    keras.add_argument("--arch", required=True, help="the lensml architecture it is (`lensml models`)")
    keras.add_argument("-o", "--output", required=True, help="model file to write")
    keras.add_argument("--config", help="LensNet's config.json: targets and output scaling (under the model's name)")
    keras.add_argument("--survey", help="lens finders: the survey of its bands (default: space for 1, ground for 4)")
    keras.add_argument("--image-size", type=_positive_int, nargs=2, metavar=("H", "W"),
                       help="input size, where the file does not record it")
    keras.set_defaults(run=_run_import_keras)

    calibrate = sub.add_parser("calibrate", help="measure a shear model's multiplicative bias on an independent "
                               "simulated set and store it in the model file")
    calibrate.add_argument("-i", "--input", required=True, help="data.json (or its folder) not used in training")
    calibrate.add_argument("-m", "--model", required=True, help="model file")
    calibrate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    calibrate.set_defaults(run=_run_calibrate)

    predict = sub.add_parser("predict", help="predict shear or lens probability for a data set or one image")
    predict.add_argument("-i", "--input", required=True,
                         help="data.json, its folder, a lens-finding folder, a list of files, or one FITS/TIFF image")
    _add_common_model_flags(predict)
    predict.add_argument("--psf", help="PSF stamp for a single image, when the model takes one")
    predict.add_argument("--metacal", action="store_const", const=True, default=None,
                         help="shear: g1, g2 and the response R11..R22 per stamp, from its metacal images")
    predict.add_argument("-o", "--output", help="write predictions to this CSV (rows are added as batches finish; "
                         "a rerun completes an interrupted file)")
    predict.add_argument("--workers", type=_nonneg_int, default=None,
                         help="lens: processes that read and normalise scenes while the model runs (default 1)")
    predict.add_argument("--shard", help="lens: score only shard K of N of the scenes (independent jobs)")
    predict.set_defaults(run=_run_predict)

    ensemble = sub.add_parser("ensemble", help="combine lens finders into one committee model file")
    ensemble.add_argument("-m", "--model", required=True, nargs="+", help="two or more lens-finder model files")
    ensemble.add_argument("-o", "--output", required=True, help="the committee's model file")
    ensemble.set_defaults(run=_run_ensemble)

    features = sub.add_parser("features", help="draw the feature maps of every convolutional layer for one image")
    features.add_argument("-m", "--model", required=True, help="model file")
    features.add_argument("-i", "--input", required=True, help="one image: a galaxy stamp, or one band file of a scene")
    features.add_argument("--psf", help="PSF stamp, for shear models that take one")
    features.add_argument("-o", "--output", required=True, help="folder for one PNG per layer")
    features.add_argument("--max-maps", type=_positive_int, default=64, help="channels drawn per layer")
    features.add_argument("--saliency", action="store_true",
                          help="also saliency.png: |d output / d pixel| per band (input gradients)")
    features.set_defaults(run=_run_features)

    preview = sub.add_parser("preview", help="draw a grid of lenses and non-lenses from a lens-finding folder")
    preview.add_argument("-i", "--input", required=True, help="lens-finding folder (challenge layout or FITS cutouts, real or simulated)")
    preview.add_argument("-o", "--output", required=True, help="PNG file")
    preview.add_argument("--lenses", type=_nonneg_int, default=8, help="lenses to show")
    preview.add_argument("--non-lenses", type=_nonneg_int, default=8, help="non-lenses to show")
    preview.set_defaults(run=_run_preview)

    surveys = sub.add_parser("surveys", help="list the surveys: bands, pixel scale, cutout size, mask value")
    surveys.set_defaults(run=_run_surveys)

    models = sub.add_parser("models", help="list the architectures, or the trained models that come with lensml")
    models.add_argument("--task", choices=("shear", "lens"), help="list only this task's architectures")
    models.add_argument("--pretrained", action="store_true",
                        help="list the trained models that come with lensml (use them as -m pretrained:NAME)")
    models.set_defaults(run=_run_models)

    quick = sub.add_parser("quickstart", help="simulate, train and evaluate a small shear set end to end")
    quick.add_argument("-o", "--output", default="lensml-quickstart", help="folder for data, model and figures")
    quick.add_argument("-n", "--number", type=_positive_int, default=2000, help="training stamps (test: a quarter)")
    quick.add_argument("--epochs", type=_positive_int, default=8, help="training epochs (default 8)")
    quick.add_argument("--seed", type=_nonneg_int, default=0,
                       help="seeds the training stamps (the test stamps take seed + 1) and the training (default 0)")
    quick.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                       help="simulation processes (default: all cores)")
    quick.set_defaults(run=_run_quickstart)
    return parser


def _run_simulate_weak(args: argparse.Namespace) -> None:
    from .config import read_config_file, replace_from
    from .simulate.record import parse_shard
    from .simulate.weak import PairDesign, preset
    from .simulate.weak_files import simulate_weak

    config = preset(args.preset)
    if args.config:
        config = replace_from(config, read_config_file(args.config), args.config)
    flags = {k: getattr(args, k) for k in ("noise", "snr", "stamp_size", "pixel_scale", "psf_profile", "psf_fwhm",
                                           "psf_beta", "psf_e_max", "galaxy_profile", "sersic_n", "hlr",
                                           "e_int_sigma", "shear_max", "shift_radius")}
    if args.snr is not None and args.noise is None:
        flags["noise"] = True
    config = replace_from(config, flags, "command line")
    shard = parse_shard(args.shard) if args.shard else None
    pairs = PairDesign(ring=args.ring, shear=args.pair_shear) if args.pairs else None
    n = args.number * pairs.stamps_per_galaxy if pairs else args.number
    manifest = simulate_weak(config, n, args.output, seed=args.seed, workers=args.workers, tif=args.tif,
                             progress=not args.quiet, shard=shard, pairs=pairs)
    print(f"wrote {n} galaxy/PSF stamp pairs and {manifest}")


def _train_flags() -> list[str]:
    """Every task's training options: the task chosen from the input refuses those not its own."""
    from .tasks import TASKS

    return sorted(set().union(*(t.train_options for t in TASKS.values())))


def _run_simulate_strong(args: argparse.Namespace) -> None:
    from .config import read_config_file
    from .simulate.record import parse_shard
    from .simulate.strong_files import simulate_strong

    if args.backgrounds:
        _run_injection(args)
        return
    if args.survey is None or args.number is None:
        raise BadInputError("simulate strong needs --survey and -n (or --backgrounds DIR to inject into real cutouts)")
    overrides = read_config_file(args.config) if args.config else None
    shard = parse_shard(args.shard) if args.shard else None
    out = simulate_strong(args.survey, args.number, args.output, seed=args.seed, lens_fraction=args.lens_fraction,
                          workers=args.workers, shard=shard, config_overrides=overrides, first_id=args.first_id,
                          catalogue=args.catalogue, progress=not args.quiet, device=args.device,
                          image_size=_image_size(args.image_size), sources=args.sources)
    print(f"wrote {args.survey} scenes to {args.output} ({out})")


def _run_injection(args: argparse.Namespace) -> None:
    from .simulate.inject import inject_arcs

    ignored = [flag for flag, value in (("--survey", args.survey), ("--image-size", args.image_size),
                                        ("--shard", args.shard), ("--config", args.config),
                                        ("--sources", args.sources)) if value]
    if ignored:
        raise BadInputError(f"{', '.join(ignored)}: not with --backgrounds (the cutouts give the survey and size)")
    labels = inject_arcs(args.backgrounds, args.output, seed=args.seed, first_id=args.first_id, number=args.number,
                         progress=not args.quiet)
    print(f"wrote injected lenses and untouched non-lenses to {args.output} ({labels})")


def _image_size(values: list[int] | None) -> int | tuple[int, int] | None:
    if values is None:
        return None
    if len(values) > 2:
        raise BadInputError(f"--image-size takes N or ROWS COLUMNS, not {len(values)} numbers")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _run_simulate_merge(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .simulate.record import read_record

    if read_record(Path(args.output)).get("kind") == "weak":
        from .simulate.weak_files import merge_weak_shards

        print(f"wrote {merge_weak_shards(args.output)}")
        return
    from .simulate.strong_files import merge_shards

    print(f"wrote {merge_shards(args.output, catalogue=args.catalogue)}")


def _run_preview(args: argparse.Namespace) -> None:
    from .preview import preview_grid

    preview_grid(args.input, args.output, n_lenses=args.lenses, n_nonlenses=args.non_lenses)
    print(f"wrote {args.output}")


def _run_train(args: argparse.Namespace) -> None:
    from .distributed import is_main
    from .tasks import given, task_for_input

    task = task_for_input(args.input)
    options = given({k: getattr(args, k) for k in _train_flags()})
    model = task.train(args.input, args.model, options, config_file=args.config, remove=args.remove,
                       progress=not args.quiet)
    if args.evaluate and is_main():
        task.evaluate(args.input, [str(model)], given({"device": args.device}), progress=not args.quiet)


def _run_evaluate(args: argparse.Namespace) -> None:
    from .tasks import given, task_for_inputs

    options = given({"device": args.device, "batch_size": args.batch_size, "tta": args.tta, "hsm": args.hsm,
                     "anacal": args.anacal, "metacal": args.metacal, "prevalence": args.prevalence,
                     "min_lensed_pixels": args.min_lensed_pixels, "json_path": args.json,
                     "plot_path": args.plot})
    task_for_inputs(args.input).evaluate(args.input, args.model, options, progress=not args.quiet)


def _run_import_keras(args: argparse.Namespace) -> None:
    from .workflows.keras_import import import_keras

    import_keras(args.input, args.arch, args.output, config_path=args.config, survey=args.survey,
                 image_size=tuple(args.image_size) if args.image_size else None)


def _run_calibrate(args: argparse.Namespace) -> None:
    from .tasks import task_named

    task_named("shear").calibrate(args.input, args.model, device=args.device, progress=not args.quiet)


def _run_predict(args: argparse.Namespace) -> None:
    from .tasks import given, task_for_model

    options = given({"device": args.device, "batch_size": args.batch_size, "tta": args.tta, "psf": args.psf,
                     "metacal": args.metacal,
                     "out_csv": args.output, "workers": args.workers, "shard": args.shard})
    task_for_model(args.model).predict(args.input, args.model, options, progress=not args.quiet)


def _run_ensemble(args: argparse.Namespace) -> None:
    from .workflows.ensemble import make_ensemble

    make_ensemble(args.model, args.output)


def _run_features(args: argparse.Namespace) -> None:
    from .workflows.feature_maps import draw_features

    draw_features(args.model, args.input, args.output, psf=args.psf, max_maps=args.max_maps, saliency=args.saliency)


def _run_models(args: argparse.Namespace) -> None:
    from .io.tables import format_table
    from .models import count_parameters, list_models

    if args.pretrained:
        _print_pretrained(args.task)
        return
    rows = []
    for spec in list_models(args.task):
        params = count_parameters(spec.builder(**spec.defaults))
        size = "x".join(map(str, spec.defaults.get("image_size", ())))
        rows.append([spec.name, spec.task, "+".join(spec.inputs), size, f"{params:,}", spec.description])
    print(format_table(["name", "task", "inputs", "default size", "params at it", "description"], rows))
    print("Networks size themselves to the training data (lens finders: any bands and cutout size).")


def _print_pretrained(task: str | None) -> None:
    """One block per model, its long descriptions wrapped to the terminal (a table would run to 600
    characters a row)."""
    import shutil
    import textwrap

    from .pretrained import PREFIX, catalogue, pretrained_path

    width = max(60, shutil.get_terminal_size((100, 24)).columns - 1)
    for name, entry in sorted(catalogue().items()):
        if task not in (None, entry["task"]):
            continue
        megabytes = pretrained_path(PREFIX + name).stat().st_size / 1e6
        print(f"{PREFIX}{name}  ({entry['task']}, {entry['arch']}, {megabytes:.1f} MB)")
        for label, text in (("trained on", entry["trained_on"]), ("scores", entry["scores"])):
            print(textwrap.fill(text, width, initial_indent=f"  {label + ':':<12}", subsequent_indent=" " * 14,
                                break_on_hyphens=False))
        print()
    print("Recipes (commands, seeds, lensml version): docs/pretrained.md")


def _run_surveys(args: argparse.Namespace) -> None:
    from .io.tables import format_table
    from .surveys import get_survey, survey_names

    rows = []
    for name in survey_names():
        s = get_survey(name)
        rows.append([name, ", ".join(s.band_names), f"{s.pixel_scale_arcsec:g}", "x".join(map(str, s.image_size)),
                     "-" if s.mask_value is None else f"{s.mask_value:g}",
                     ", ".join(s.rgb_bands) if s.rgb_bands else "-", s.population, s.description])
    print(format_table(["name", "bands", "arcsec/px", "cutout", "mask", "RGB", "population", "description"], rows))


def _run_quickstart(args: argparse.Namespace) -> None:
    from .workflows.quickstart import quickstart

    quickstart(args.output, n=args.number, epochs=args.epochs, seed=args.seed, workers=args.workers,
               progress=not args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    launched = "WORLD_SIZE" in os.environ and os.environ["WORLD_SIZE"] != "1"  # started by torchrun
    try:
        if launched:
            _join_process_group(args)
        _load_survey_files(args.survey_file)
        run(args)
        if launched:
            from . import distributed

            distributed.barrier()  # rank 0 may still be writing
    except LensmlError as exc:
        print(f"lensml: error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
        return exc.exit_code
    except KeyboardInterrupt:
        print("lensml: interrupted", file=sys.stderr)
        return 130
    finally:
        if launched:
            from . import distributed

            distributed.stop()
    return 0


def _load_survey_files(paths: Sequence[str]) -> None:
    from .surveys import load_survey_file

    for path in paths:
        load_survey_file(path)


def _join_process_group(args: argparse.Namespace) -> None:
    """Under torchrun: `train` runs data-parallel; rank 0 alone prints and writes."""
    from . import distributed

    if args.command != "train":
        raise BadInputError(f"`lensml {args.command}` does not run under torchrun; only `train` does (split "
                            "simulation and prediction into independent jobs with --shard K/N)")
    if not distributed.start().is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of this process)
        args.quiet = True


if __name__ == "__main__":
    sys.exit(main())
