"""End to end through `lensml` itself: real files in, tables, JSON, CSV and PNG out."""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from lensml import __version__
from lensml.cli import build_parser, main


def run(*args):
    return main(["-q", *map(str, args)])


def test_version_and_models(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out
    assert run("models") == 0
    out = capsys.readouterr().out
    assert "shear_cnn" in out and "lensnet_vgg19" in out and "20,549,570" in out
    lines = out.splitlines()[:-1]  # the table, without the closing remark
    assert all(line == line.rstrip() for line in lines)
    # numbers right-aligned (their last digits in one column), text left-aligned (first letters in one)
    assert len({re.search(r"\s(\d[\d,]*)\s\s", line).end(1) for line in lines[1:]}) == 1
    assert len({line.index(word) for line, word in zip(lines[1:], ("CAS", "CMU", "LASTRO"))}) == 1
    assert all(not line.startswith(" ") for line in lines)


def test_console_script_is_installed():
    """The `lensml` command that pip put beside this interpreter, and `python -m lensml`, both run the CLI."""
    script = shutil.which("lensml", path=str(Path(sys.executable).parent))
    assert script is not None, f"no lensml command in {Path(sys.executable).parent}"
    for command in ([script], [sys.executable, "-m", "lensml"]):
        result = subprocess.run([*command, "train", "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "--epochs" in result.stdout, command


def _options(parser: argparse.ArgumentParser, command: str):
    """(command, option, help) for every option of every subcommand, walking nested subparsers."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{command} {name}")
        elif action.option_strings:
            yield command, action.option_strings[-1], action.help


def test_every_option_says_what_it_does():
    options = list(_options(build_parser(), "lensml"))
    assert len(options) > 100  # the walk reached the subcommands
    assert [(command, flag) for command, flag, text in options if not text] == []


def test_simulate_flags_reach_the_files(tmp_path, capsys):
    out = tmp_path / "sim"
    assert run("simulate", "weak", "-n", 6, "-o", out, "--profile", "sersic", "--sersic-n", 1, 2, "--snr", 30,
               "--stamp-size", 32, "--psf", "gaussian", "--psf-fwhm", 2.0, "--seed", 4, "--workers", 1) == 0
    entries = json.loads((out / "data.json").read_text())
    assert len(entries) == 6 and all(1 <= e["sersic_n"] <= 2 and e["snr"] == 30 for e in entries)
    assert fits.getdata(out / "gal_0.fits").shape == (32, 32)
    record = json.loads((out / "simulation.json").read_text())
    assert record["config"]["psf_profile"] == "gaussian" and record["config"]["noise"] is True


def test_train_evaluate_predict(weak_set, tmp_path, capsys):
    model = tmp_path / "models" / "net"
    assert run("train", "-i", weak_set, "-m", model, "--epochs", 1, "--batch-size", 16, "--val-fraction", 0.25,
               "--evaluate") == 0
    out = capsys.readouterr().out
    assert "HSM REGAUSS" in out and "the 24 entries the model did not train on" in out

    report, plot = tmp_path / "eval.json", tmp_path / "eval.png"
    assert run("evaluate", "-i", weak_set, "-m", model, "--json", report, "--plot", plot, "--tta") == 0
    results = json.loads(report.read_text())
    assert results["n"] == 24 and results["tta"] is True
    for key in ("rmse_g1", "rmse_g2", "m1", "m2", "c1", "c2", "m1_err", "c2_err"):
        assert np.isfinite(results[key]) and np.isfinite(results["hsm"][key])
    assert results["hsm"]["method"] == "REGAUSS" and results["hsm"]["n"] + results["hsm"]["failures"] == 24
    assert plot.read_bytes()[:4] == b"\x89PNG"

    csv_path = tmp_path / "pred.csv"
    assert run("predict", "-i", weak_set, "-m", model, "-o", csv_path) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "index,galaxy,g1,g2,g1_true,g2_true" and len(lines) == 97

    folder = weak_set.parent
    capsys.readouterr()
    assert run("predict", "-i", folder / "gal_3.fits", "--psf", folder / "psf_3.fits", "-m", model) == 0
    single = capsys.readouterr().out
    assert "g1 =" in single and "g2 =" in single
    assert f"{float(lines[4].split(',')[2]):+.5f}" in single  # same answer as row 3 of the batch


def test_lensnet_vgg19_trains_on_8bit_tif_manifest(weak_set, tmp_path):
    """LensNet's own datasets point at 8-bit TIFFs; lensml reads them as they are."""
    tif_set = tmp_path / "tif"
    shutil.copytree(weak_set.parent, tif_set)
    entries = json.loads((tif_set / "data.json").read_text())[:24]
    for e in entries:
        e["galaxy"], e["psf"] = e.pop("galaxy_tif"), e.pop("psf_tif")
    (tif_set / "data.json").write_text(json.dumps(entries))
    model = tmp_path / "vgg"
    assert run("train", "-i", tif_set / "data.json", "-m", model, "--arch", "lensnet_vgg19", "--epochs", 1,
               "--batch-size", 8) == 0
    assert run("predict", "-i", tif_set / "gal_0.tif", "-m", model) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "-i", "{tmp}/absent.json", "-m", "{tmp}/m"], "no such file"),
        (["train", "-i", "{tmp}/notjson.json", "-m", "{tmp}/m"], "not valid JSON"),
        (["train", "-i", "{tmp}/object.json", "-m", "{tmp}/m"], "JSON array"),
        (["train", "-i", "{tmp}/nokey.json", "-m", "{tmp}/m"], "has no 'g2'"),
        (["train", "-i", "{tmp}/badvalue.json", "-m", "{tmp}/m"], "finite number"),
        (["train", "-i", "{tmp}/missingimage.json", "-m", "{tmp}/m"], "no such file"),
        (["train", "-i", "{set}", "-m", "{tmp}/m", "--arch", "nope"], "unknown architecture"),
        (["evaluate", "-i", "{set}", "-m", "{tmp}/absent"], "no such model"),
        (["evaluate", "-i", "{set}", "-m", "{tmp}/notjson.json"], "not a readable"),
        (["evaluate", "-i", "{set}", "{tmp}/lenses", "-m", "{model}"], "score them apart"),
        (["evaluate", "-i", "{tmp}/lenses", "{tmp}/lenses", "-m", "{model}"], "one folder at a time"),
        (["predict", "-i", "{setdir}/gal_1.fits", "-m", "{model}"], "--psf"),
        (["simulate", "weak", "-n", "3", "-o", "{tmp}/notjson.json"], "not a folder"),
        (["simulate", "weak", "-n", "3", "-o", "{tmp}/s", "--config", "{tmp}/badsim.yaml"], "unknown setting"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message, tmp_path, weak_set, trained_model, capsys):
    (tmp_path / "notjson.json").write_text("{oops")
    (tmp_path / "object.json").write_text('{"galaxy": "x"}')
    (tmp_path / "nokey.json").write_text('[{"galaxy": "g.fits", "psf": "p.fits", "g1": 0.1}]')
    (tmp_path / "badvalue.json").write_text('[{"galaxy": "g.fits", "psf": "p.fits", "g1": 0.1, "g2": "x"}]')
    (tmp_path / "missingimage.json").write_text('[{"galaxy": "g.fits", "psf": "p.fits", "g1": 0.1, "g2": 0.2}]')
    (tmp_path / "badsim.yaml").write_text("galaxy_colour: red\n")
    (tmp_path / "lenses" / "Public").mkdir(parents=True)
    fill = {"tmp": tmp_path, "set": weak_set, "setdir": weak_set.parent, "model": trained_model}
    code = run(*[a.format(**fill) for a in args])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("lensml: error:") and message in err
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("args", [["simulate", "weak", "-n", "0", "-o", "x"], ["train", "-i", "x", "-m", "y", "--epochs", "-2"]])
def test_bad_numbers_are_refused_by_the_parser(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "must be positive" in err
    assert err.count("\n") == 1 and err.startswith(f"lensml: error: lensml {args[0]}"), err  # one line, as every error


def test_an_unknown_option_or_command_is_one_line(capsys):
    for argv in (["train", "-i", "x", "-m", "y", "--views", "3"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("lensml: error:"), err


def test_quickstart_runs_the_whole_job_on_a_tiny_set(tmp_path, capsys):
    assert run("quickstart", "-o", tmp_path / "qs", "-n", 40, "--epochs", 1, "--workers", 1) == 0
    results = json.loads((tmp_path / "qs" / "results.json").read_text())
    assert results["n"] == 16 and results["subset"] == "all entries" and "hsm" in results
    assert results["paired"]["n_pairs"] == 8 and "paired" in results["hsm"]
    assert results["metacal"]["paired"]["n_pairs"] == 8  # the network trained for metacal, calibrated by it
    assert (tmp_path / "qs" / "shear.png").is_file() and "paired design" in capsys.readouterr().out


def test_strong_simulation_feeds_lens_finding(tmp_path, capsys):
    data = tmp_path / "space"
    assert run("simulate", "strong", "--survey", "space", "-n", 24, "-o", data, "--seed", 2, "--catalogue") == 0
    assert len(list((data / "Public" / "Band1").glob("imageEUC_VIS-*.fits"))) == 24
    assert (data / "classifications.csv").read_text().startswith(
        "ID,is_lens,Einstein_area,numb_pix_lensed_image,flux_lensed_image_in_sigma")
    assert run("preview", "-i", data, "-o", tmp_path / "grid.png", "--lenses", 2, "--non-lenses", 2) == 0
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert run("train", "-i", data, "-m", tmp_path / "flow", "--arch", "lens_flow", "--epochs", 1, "--batch-size", 8,
               "-e") == 0
    assert "TPR10" in capsys.readouterr().out
    assert run("simulate", "strong", "--survey", "space", "-n", 4, "-o", tmp_path / "x", "--shard", "3/2") == 2
    assert "1 <= K <= N" in capsys.readouterr().err
