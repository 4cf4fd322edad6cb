"""Bad input: one line on stderr naming the problem, a non-zero exit, and no output file left behind."""

import json
import shutil

import numpy as np
import pytest
import torch
from astropy.io import fits

from conftest import copy_samples
from lensml.cli import main
from lensml.device import resolve_device
from lensml.errors import BadInputError



@pytest.fixture(scope="module")
def bad(tmp_path_factory, weak_set, trained_model, challenge_samples):
    """A folder of broken inputs next to good ones; names are what the table refers to."""
    root = tmp_path_factory.mktemp("bad")
    good_dir = weak_set.parent
    entries = json.loads(weak_set.read_text())

    def manifest(name, content):
        (root / name).write_text(content if isinstance(content, str) else json.dumps(content))

    def with_images(name, galaxy_array=None, galaxy_bytes=None):
        folder = root / name
        folder.mkdir()
        for e in entries[:4]:
            shutil.copy(good_dir / e["galaxy"], folder / e["galaxy"])
            shutil.copy(good_dir / e["psf"], folder / e["psf"])
        target = folder / entries[0]["galaxy"]
        if galaxy_array is not None:
            fits.PrimaryHDU(galaxy_array).writeto(target, overwrite=True)
        if galaxy_bytes is not None:
            target.write_bytes(galaxy_bytes)
        # a field the training entries lack: evaluation sees stamps the model did not train on
        (folder / "data.json").write_text(json.dumps([{**e, "copy": 1} for e in entries[:4]]))

    manifest("notjson.json", "{oops")
    manifest("object.json", {"galaxy": "x"})
    manifest("empty.json", [])
    manifest("notobject.json", [1, 2])
    manifest("nogalaxy.json", [{"psf": "p.fits", "g1": 0.1, "g2": 0.1}])
    manifest("nokey.json", [{"galaxy": "g.fits", "psf": "p.fits", "g1": 0.1}])
    manifest("badvalue.json", [{"galaxy": "g.fits", "psf": "p.fits", "g1": 0.1, "g2": "x"}])
    manifest("nanvalue.json", '[{"galaxy": "g.fits", "psf": "p.fits", "g1": NaN, "g2": 0.1}]')
    manifest("imagename.json", [{"galaxy": 7, "psf": "p.fits", "g1": 0.1, "g2": 0.1}])
    manifest("missingimage.json", [{"galaxy": "g.fits", "psf": "p.fits", "g1": 0.1, "g2": 0.2}])
    with_images("textimage", galaxy_bytes=b"not a fits file at all")
    with_images("smallimage", galaxy_array=np.zeros((32, 32), np.float32))
    with_images("nanimage", galaxy_array=np.full((40, 40), np.nan, np.float32))
    some_nan = np.ones((40, 40), np.float32)
    some_nan[3, 3] = np.inf
    with_images("someinf", galaxy_array=some_nan)
    (root / "truncated.safetensors").write_bytes(trained_model.read_bytes()[:3000])
    (root / "badsim.yaml").write_text("galaxy_colour: red\n")
    (root / "notyaml.yaml").write_text("snr: [1, 2\n")
    (root / "wide.fits").write_bytes(b"")
    fits.PrimaryHDU(np.zeros((32, 32), np.float32)).writeto(root / "small.fits")

    space = root / "space"
    copy_samples(challenge_samples / "space", space)
    nolabel = root / "nolabel"
    copy_samples(challenge_samples / "space", nolabel)
    (nolabel / "classifications.csv").write_text("ID,is_lens\n100002,1\n")
    orphan = root / "orphanlabel"
    copy_samples(challenge_samples / "space", orphan)
    columns = (orphan / "classifications.csv").read_text().splitlines()[0].count(",") + 1
    with open(orphan / "classifications.csv", "a") as f:
        f.write("999999,1" + ",0" * (columns - 2) + "\n")
    nocolumn = root / "nocolumn"
    copy_samples(challenge_samples / "space", nocolumn)
    (nocolumn / "classifications.csv").write_text("ID,lens\n100002,1\n")
    missingband = root / "missingband"
    copy_samples(challenge_samples / "ground", missingband)
    (missingband / "Public" / "Band4" / "imageSDSS_U-100004.fits").unlink()
    wrongsize = root / "wrongsize"
    copy_samples(challenge_samples / "space", wrongsize)
    fits.PrimaryHDU(np.zeros((64, 64), np.float32)).writeto(
        wrongsize / "Public" / "Band1" / "imageEUC_VIS-100003.fits", overwrite=True)
    return {"root": root, "set": weak_set, "setdir": good_dir, "model": trained_model}


CASES = [
    # data.json
    (["train", "-i", "{root}/absent.json"], 3, "no such file"),
    (["train", "-i", "{root}/notjson.json"], 2, "not valid JSON"),
    (["train", "-i", "{root}/object.json"], 2, "JSON array"),
    (["train", "-i", "{root}/empty.json"], 2, "holds no entries"),
    (["train", "-i", "{root}/notobject.json"], 2, "is not an object"),
    (["train", "-i", "{root}/nogalaxy.json"], 2, "no 'galaxy' image"),
    (["train", "-i", "{root}/nokey.json"], 2, "has no 'g2'"),
    (["train", "-i", "{root}/badvalue.json"], 2, "finite number"),
    (["train", "-i", "{root}/nanvalue.json"], 2, "finite number"),
    (["train", "-i", "{root}/imagename.json"], 2, "must be a file name"),
    (["train", "-i", "{root}/missingimage.json"], 3, "no such file"),
    (["train", "-i", "{root}/textimage"], 2, "not a readable FITS image"),
    (["train", "-i", "{root}/smallimage"], 2, "all stamps need one size"),
    (["train", "-i", "{root}/nanimage"], 2, "no finite value"),
    (["train", "-i", "{root}/someinf"], 2, "NaN or infinite"),
    # training settings
    (["train", "-i", "{set}", "--arch", "nope"], 2, "unknown architecture"),
    (["train", "-i", "{set}", "--val-fraction", "1.5"], 2, "validation fraction"),
    (["train", "-i", "{set}", "--lr", "-1"], 2, "learning rate must be positive"),
    (["train", "-i", "{set}", "--config", "{root}/notyaml.yaml"], 2, "cannot parse config"),
    (["train", "-i", "{set}", "--arch", "lens_flow"], 2, "shear one"),
    (["train", "-i", "{set}", "--targets", "g1", "g1"], 2, "each target once, got g1 g1"),
    (["train", "-i", "{set}", "--arch", "lensnet_vgg19", "--width", "8"], 2, "lensnet_vgg19 has no width setting"),
    (["train", "-i", "{root}/space", "--arch", "lens_flow", "--width", "8"], 2, "--width"),
    (["train", "-i", "{set}", "--norm", "minmax"], 2, "--norm applies to lens finding (a challenge-layout or cutout folder), not to shear data"),
    # model files
    (["evaluate", "-i", "{set}", "-m", "{root}/absent"], 3, "no such model"),
    (["evaluate", "-i", "{set}", "-m", "{root}/notjson.json"], 2, "not a readable"),
    (["evaluate", "-i", "{set}", "-m", "{root}/truncated.safetensors"], 2, "not a readable"),
    (["evaluate", "-i", "{root}/smallimage", "-m", "{model}"], 2, "expected 40x40"),
    (["predict", "-i", "{setdir}/gal_1.fits", "-m", "{model}"], 2, "--psf"),
    (["predict", "-i", "{root}/small.fits", "--psf", "{root}/small.fits", "-m", "{model}"], 2, "expects 40x40"),
    (["evaluate", "-i", "{root}/space", "-m", "{model}"], 2, "is a shear model"),
    (["calibrate", "-i", "{root}/space", "-m", "pretrained:lastro_epfl_space"], 2,
     "`lensml calibrate` measures a shear model's multiplicative bias"),
    (["calibrate", "-i", "{set}", "-m", "pretrained:shear_net_ground"], 2, "calibrated by its own response"),
    (["features", "-i", "{root}/space", "-m", "pretrained:shear_net_ground", "-o", "{root}/maps"], 2, "is a folder"),
    (["features", "-i", "{setdir}/gal_1.fits", "--psf", "{setdir}", "-m", "{model}", "-o", "{root}/maps"], 2,
     "is a folder"),
    (["features", "-i", "{root}/space", "-m", "pretrained:lastro_epfl_space", "-o", "{root}/maps"], 2, "is a folder"),
    (["predict", "--metacal", "-i", "{setdir}/gal_1.fits", "--psf", "{setdir}", "-m", "pretrained:shear_net_ground"], 2,
     "is a folder"),
    # challenge folders
    (["train", "-i", "{root}/nolabel", "--arch", "lens_flow"], 2, "has no label"),
    (["train", "-i", "{root}/orphanlabel", "--arch", "lens_flow"], 2, "999999 has a label but no image"),
    (["simulate", "strong", "--survey", "space", "-n", "3", "--device", "cuda:7"], 2, "sees no CUDA GPU"),
    (["train", "-i", "{root}/nocolumn", "--arch", "lens_flow"], 2, "is_lens"),
    (["train", "-i", "{root}/missingband", "--arch", "lens_flow"], 2, "100004"),
    (["train", "-i", "{root}/wrongsize", "--arch", "lens_flow"], 2, "is 64x64 pixels, the set's are 101x101"),
    (["train", "-i", "{root}/space", "--arch", "lens_flow", "--loss", "mae"], 2, "--loss applies to shear data"),
    # simulation
    (["simulate", "weak", "-n", "3", "-o", "{root}/notjson.json"], 2, "not a folder"),
    (["simulate", "weak", "-n", "3", "--config", "{root}/badsim.yaml"], 2, "unknown setting"),
    (["simulate", "weak", "-n", "3", "--snr", "50", "10"], 2, "above high"),
    (["simulate", "weak", "-n", "3", "--psf-e-max", "0.9"], 2, "psf_e_max"),
    (["simulate", "weak", "-n", "3", "-o", "/proc/lensml-out"], 2, "cannot write"),
    (["simulate", "strong", "--survey", "space", "-n", "3", "--lens-fraction", "1.5"], 2, "lens fraction must lie in [0, 1]"),
]


@pytest.mark.parametrize("args, code, message", CASES, ids=[" ".join(c[0][:3]) + f" [{i}]" for i, c in enumerate(CASES)])
def test_bad_input(args, code, message, bad, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answers on a machine with a GPU
    fill = {k: str(v) for k, v in bad.items()}
    argv = [a.format(**fill) for a in args]
    if argv[0] in ("train",) and "-m" not in argv:
        argv += ["-m", str(tmp_path / "model")]
    if argv[0] == "simulate" and "-o" not in argv:
        argv += ["-o", str(tmp_path / "out")]
    before = sorted(p.name for p in bad["root"].iterdir())
    exit_code = main(["-q", *argv])
    err = capsys.readouterr().err
    assert exit_code == code
    assert err.count("\n") == 1 and err.startswith("lensml: error:") and message in err, err
    assert not any(tmp_path.iterdir()), "a failed command left output behind"
    assert sorted(p.name for p in bad["root"].iterdir()) == before


@pytest.mark.parametrize("gpus, name, message", [
    (1, "cuda:7", "--device cuda:7: torch sees 1 CUDA GPU (cuda:0)"),
    (2, "cuda:2", "--device cuda:2: torch sees 2 CUDA GPUs (cuda:0 to cuda:1)"),
])
def test_a_gpu_index_beyond_the_machines_is_a_one_line_error(gpus, name, message, monkeypatch):
    """Not a CUDA 'invalid device ordinal' traceback at the first tensor moved there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    with pytest.raises(BadInputError) as caught:
        resolve_device(name)
    assert str(caught.value) == message
    assert resolve_device(f"cuda:{gpus - 1}") == torch.device("cuda", gpus - 1)


def test_outputs_never_overwrite_inputs_and_bad_plot_names_fail_before_the_work(bad, tmp_path, capsys):
    data = bad["set"] if bad["set"].name == "data.json" else bad["set"] / "data.json"
    kept = data.read_bytes()
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    first.write_bytes(bad["model"].read_bytes())
    second.write_bytes(bad["model"].read_bytes())
    (tmp_path / "figures").mkdir()
    for argv, message in (
        (["predict", "-i", data, "-m", bad["model"], "-o", data], "that file is input data"),
        (["ensemble", "-m", first, second, "-o", first], "is one of the members"),
        (["evaluate", "-i", data, "-m", bad["model"], "--plot", tmp_path / "roc"], "image format's extension"),
        (["evaluate", "-i", data, "-m", bad["model"], "--plot", tmp_path / "figures"], "it is a folder"),
    ):
        capsys.readouterr()
        assert main(["-q", *map(str, argv)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert data.read_bytes() == kept and first.read_bytes() == bad["model"].read_bytes()


@pytest.mark.parametrize("setting, message", [({"epochs": 1.5}, "epochs must be a positive whole number"),
                                              ({"seed": -1}, "seed must be a whole number, 0 or more"),
                                              ({"batch_size": 8.0}, "batch size must be a positive whole number")])
def test_a_settings_file_with_a_fractional_count_is_a_one_line_error(setting, message, bad, tmp_path, capsys):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps(setting))
    assert main(["-q", "train", "-i", str(bad["set"]), "-m", str(tmp_path / "m"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
