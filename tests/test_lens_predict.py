"""Streaming prediction over a folder or a list of files: batch-independent scores, resumable CSV,
shards that add up to the whole, and the same scores as evaluation's cached path."""

import csv
import json
import math

import numpy as np
import pytest

from lensml.cli import main
from lensml.data.lens_set import load_lens_set
from lensml.modelfile import load_model
from lensml.simulate.strong_files import simulate_strong
from lensml.workflows import lens_predict
from lensml.workflows.lens_eval import lens_probabilities, lens_scores, temperature
from lensml.workflows.lens_predict import probability_text


def run(*args):
    return main(["-q", *map(str, args)])


def rows(path):
    with open(path) as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    folder = simulate_strong("space", 23, root / "set", seed=9, progress=False, batch_size=23).parent
    model = root / "flow.safetensors"
    assert run("train", "-i", folder, "-m", model, "--arch", "lens_flow", "--epochs", 1, "--batch-size", 8) == 0
    return folder, model


def test_streamed_scores_equal_the_cached_scores_whatever_the_batching(survey, tmp_path):
    folder, model = survey
    assert run("predict", "-i", folder, "-m", model, "-o", tmp_path / "a.csv", "--batch-size", 5, "--workers", 2) == 0
    assert run("predict", "-i", folder, "-m", model, "-o", tmp_path / "b.csv", "--workers", 0) == 0
    a, b = rows(tmp_path / "a.csv"), rows(tmp_path / "b.csv")
    assert a[0] == ["ID", "p_lens", "is_lens"] and len(a) == 24
    # the same rows; probabilities to float32 rounding (another batch size sums in another order)
    assert [(r[0], r[2]) for r in a] == [(r[0], r[2]) for r in b]
    np.testing.assert_allclose([float(r[1]) for r in a[1:]], [float(r[1]) for r in b[1:]], rtol=0, atol=2e-6)
    net, info = load_model(model)
    data = load_lens_set(folder, info.norm, progress=False)
    cached, _ = lens_scores(net, data.images, __import__("torch").device("cpu"), temperature=temperature(info), views=8)
    np.testing.assert_allclose([float(r[1]) for r in a[1:]], cached, rtol=1e-5)
    assert [int(r[0]) for r in a[1:]] == list(data.keys) and [int(r[2]) for r in a[1:]] == data.labels.tolist()
    assert not list(tmp_path.glob("*.partial*"))


def test_a_model_trained_on_asinh_scenes_is_given_asinh_scenes(survey, tmp_path):
    folder, _ = survey
    model = tmp_path / "asinh.safetensors"
    assert run("train", "-i", folder, "-m", model, "--arch", "lens_flow", "--epochs", 1, "--batch-size", 8,
               "--norm", "asinh") == 0
    net, info = load_model(model)
    assert info.norm == "asinh"
    assert run("predict", "-i", folder, "-m", model, "-o", tmp_path / "p.csv", "--workers", 0) == 0
    streamed = [float(r[1]) for r in rows(tmp_path / "p.csv")[1:]]
    device, t = __import__("torch").device("cpu"), temperature(info)
    asinh, _ = lens_scores(net, load_lens_set(folder, "asinh", progress=False).images, device, temperature=t, views=8)
    zscale, _ = lens_scores(net, load_lens_set(folder, "zscale", progress=False).images, device, temperature=t, views=8)
    # after one epoch every probability is near 0.5: the asinh inputs give the streamed values to float
    # rounding, the ZScale ones measurably other values
    assert np.abs(np.asarray(streamed) - asinh).max() <= 2e-6
    assert np.abs(np.asarray(streamed) - zscale).max() > 2e-5


def test_an_interrupted_prediction_is_completed_by_a_rerun(survey, tmp_path, monkeypatch):
    folder, model = survey
    full, out = tmp_path / "full.csv", tmp_path / "out.csv"
    assert run("predict", "-i", folder, "-m", model, "-o", full, "--batch-size", 4, "--workers", 0) == 0
    append = lens_predict.ResumableCsv.append
    calls = []

    def dying_append(self, batch):
        if len(calls) == 2:
            with open(self.partial, "a") as f:
                f.write("100011,0.3")  # killed in the middle of a row
            raise KeyboardInterrupt
        calls.append(len(batch))
        append(self, batch)

    monkeypatch.setattr(lens_predict.ResumableCsv, "append", dying_append)
    assert run("predict", "-i", folder, "-m", model, "-o", out, "--batch-size", 4, "--workers", 0) == 130
    partial = rows(out.with_name("out.csv.partial"))
    assert not out.exists() and len(partial) == 1 + 8 + 1 and partial[-1] == ["100011", "0.3"]
    monkeypatch.setattr(lens_predict.ResumableCsv, "append", append)
    scored = []
    monkeypatch.setattr(lens_predict, "_stream", _counting(lens_predict._stream, scored))
    assert run("predict", "-i", folder, "-m", model, "-o", out, "--batch-size", 4, "--workers", 0) == 0
    assert scored == [23 - 8]  # only the rest was scored
    assert out.read_text() == full.read_text()
    assert not list(tmp_path.glob("*.partial*"))


def _counting(stream, scored):
    def wrapped(net, info, scenes, keys, *args):
        scored.append(len(keys))
        return stream(net, info, scenes, keys, *args)
    return wrapped


def test_a_partial_file_of_another_model_is_not_resumed(survey, tmp_path):
    folder, model = survey
    out = tmp_path / "out.csv"
    (tmp_path / "out.csv.partial").write_text("ID,p_lens,is_lens\n100000,0.999,1\n")
    (tmp_path / "out.csv.partial.json").write_text('{"model_sha256": "another"}')
    assert run("predict", "-i", folder, "-m", model, "-o", out, "--workers", 0) == 0
    assert len(rows(out)) == 24 and rows(out)[1][1] != "0.999"


def test_shards_and_lists_of_files(survey, tmp_path):
    folder, model = survey
    assert run("predict", "-i", folder, "-m", model, "-o", tmp_path / "all.csv", "--workers", 0) == 0
    for k in (1, 2, 3):
        assert run("predict", "-i", folder, "-m", model, "-o", tmp_path / f"s{k}.csv", "--shard", f"{k}/3",
                   "--workers", 0) == 0
    shards = [r for k in (1, 2, 3) for r in rows(tmp_path / f"s{k}.csv")[1:]]
    assert sorted(shards) == sorted(rows(tmp_path / "all.csv")[1:])

    files = sorted((folder / "Public" / "Band1").glob("*.fits"))[::2]
    listing = tmp_path / "scenes.txt"
    listing.write_text("# one band file per scene\n" + "".join(f"{p}\n" for p in files))
    assert run("predict", "-i", listing, "-m", model, "-o", tmp_path / "list.csv", "--workers", 0) == 0
    by_id = {r[0]: r[1] for r in rows(tmp_path / "all.csv")[1:]}
    listed = rows(tmp_path / "list.csv")
    assert listed[0] == ["file", "p_lens"] and len(listed) == len(files) + 1
    for name, p in listed[1:]:
        assert p == by_id[name.rsplit("-", 1)[1].removesuffix(".fits")]


def test_bad_lists_are_one_line_errors(survey, tmp_path, capsys):
    folder, model = survey
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    missing = tmp_path / "missing.txt"
    missing.write_text("nowhere/imageEUC_VIS-1.fits\n")
    for listing, message, workers in ((empty, "lists no files", 0), (missing, "imageEUC_VIS-1.fits", 0),
                                      (missing, "imageEUC_VIS-1.fits", 1)):  # raised in a loader process
        assert run("predict", "-i", listing, "-m", model, "-o", tmp_path / "x.csv", "--workers", workers) == 3 - (
            message == "lists no files")
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "x.csv").exists()


def test_device_names_cpu_and_gpu(monkeypatch):
    import torch

    from lensml.device import device_name

    assert device_name(torch.device("cpu")).startswith("cpu (")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"Fake GPU {device.index}")
    assert device_name(torch.device("cuda", 1)) == "Fake GPU 1"


def test_file_names_with_commas_survive_a_resume(survey, tmp_path):
    folder, model = survey
    odd = tmp_path / "odd, name"
    odd.mkdir()
    band = sorted((folder / "Public" / "Band1").glob("*.fits"))[0]
    (odd / band.name).write_bytes(band.read_bytes())
    listing = tmp_path / "list.txt"
    listing.write_text(f"{odd / band.name}\n")
    out = tmp_path / "odd.csv"
    assert run("predict", "-i", listing, "-m", model, "-o", out, "--workers", 0) == 0
    assert rows(out)[1][0] == str(odd / band.name)


def test_confident_candidates_do_not_tie_at_probability_one():
    """Logits of 20 and 25 are both 1.0 as float32 probabilities; evaluation ranks them, so they stay apart."""
    torch = __import__("torch")

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[20.0], [25.0], [-30.0]])

    p, _ = lens_probabilities(Fixed(), torch.zeros(3, 1, 4, 4), torch.device("cpu"))
    assert p.dtype == np.float64 and p[0] < p[1] < 1.0 and 0.0 < p[2]


@pytest.mark.parametrize("logit", [-40.0, -3.0, 0.0, 1.9, 15.0, 20.0, 30.0])
def test_the_csv_keeps_six_digits_of_p_and_of_one_minus_p(logit):
    """Candidates at 1 - p = 1e-7 and 1e-9 stay apart in predict's file (6 digits of p alone write both as 1)."""
    p = 1.0 / (1.0 + math.exp(-logit))
    written = float(probability_text(p))
    assert abs(written - p) <= max(5e-6 * min(p, 1.0 - p), 2e-16)  # float64 holds 1 - p to 1e-16
    assert probability_text(1.0 / (1.0 + math.exp(-logit - 0.01))) != probability_text(p)


def test_the_csv_text_of_p_is_short_ordered_and_total():
    """No more digits than 6 of p and of 1 - p need, ranks kept, and the edge values (0, 1, NaN) written."""
    assert probability_text(0.870008) == "0.870008"
    assert probability_text(0.25) == "0.25"
    assert probability_text(0.0) == "0" and probability_text(1.0) == "1"
    assert probability_text(float("nan")) == "nan"
    ps = 1.0 / (1.0 + np.exp(-np.linspace(-30.0, 30.0, 997)))
    written = [float(probability_text(float(p))) for p in ps]
    assert all(a < b for a, b in zip(written, written[1:]))


def test_eight_views_make_the_score_blind_to_how_the_cutout_is_turned():
    """The mean logit over the 8 D4 views is the same for a scene turned by 90 degrees or transposed; a
    single view is not (a CNN is not rotation invariant), and --views 1 is that single view."""
    torch = __import__("torch")
    from lensml.models import create_model

    torch.manual_seed(0)
    net = create_model("lens_flow", in_channels=2, image_size=(24, 24)).eval()
    x = torch.randn(5, 2, 24, 24, dtype=torch.float32)
    turned = [torch.rot90(x, 1, dims=(-2, -1)), x.transpose(-2, -1), torch.rot90(x.flip(-1), 3, dims=(-2, -1))]
    cpu = torch.device("cpu")
    p8 = lens_probabilities(net, x, cpu, views=8)[0]
    for y in turned:
        np.testing.assert_allclose(lens_probabilities(net, y, cpu, views=8)[0], p8, rtol=0, atol=1e-6)
    p1 = lens_probabilities(net, x, cpu, views=1)[0]
    assert max(np.abs(lens_probabilities(net, y, cpu, views=1)[0] - p1).max() for y in turned) > 1e-4
    with torch.inference_mode():
        by_hand = torch.stack([net(torch.rot90(x, k, dims=(-2, -1))) for k in range(4)]).mean(0)
    np.testing.assert_allclose(lens_probabilities(net, x, cpu, views=4)[0],
                               torch.sigmoid(by_hand.double()).flatten().numpy(), rtol=0, atol=1e-6)


def test_views_flag_reaches_predict_and_evaluate(survey, tmp_path):
    folder, model = survey
    net, info = load_model(model)
    data = load_lens_set(folder, info.norm, progress=False)
    single, _ = lens_scores(net, data.images, __import__("torch").device("cpu"), temperature=temperature(info), views=1)
    assert run("predict", "-i", folder, "-m", model, "-o", tmp_path / "one.csv", "--workers", 0, "--views", 1) == 0
    assert run("predict", "-i", folder, "-m", model, "-o", tmp_path / "no.csv", "--workers", 0, "--no-tta") == 0
    for name in ("one.csv", "no.csv"):
        np.testing.assert_allclose([float(r[1]) for r in rows(tmp_path / name)[1:]], single, rtol=1e-5)
    for views in (1, 8):
        assert run("evaluate", "-i", folder, "-m", model, "--views", views, "--json", tmp_path / f"e{views}.json") == 0
        assert json.loads((tmp_path / f"e{views}.json").read_text())["views"] == views


def test_predictions_never_overwrite_the_data_they_come_from(survey, tmp_path, capsys):
    """-o naming the label table, the input list, a model or a folder is refused before any scoring;
    a list that names a missing file leaves no half-started CSV behind."""
    folder, model = survey
    labels = folder / "classifications.csv"
    kept = labels.read_bytes()
    listing = tmp_path / "scenes.txt"
    listing.write_text("\n".join(str(p) for p in sorted((folder / "Public").rglob("*.fits"))[:3]) + "\n")
    for out, message in ((labels, "that file is input data"), (listing, "that file is input data"),
                         (model, "that file is input data"), (tmp_path, "it is a folder")):
        source = listing if out == listing else folder
        capsys.readouterr()
        assert run("predict", "-i", source, "-m", model, "-o", out) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert labels.read_bytes() == kept
    broken = tmp_path / "broken.txt"
    broken.write_text(listing.read_text() + str(tmp_path / "absent.fits") + "\n")
    assert run("predict", "-i", broken, "-m", model, "-o", tmp_path / "scores.csv") == 3  # fails in its first batch
    assert not list(tmp_path.glob("scores.csv*"))


def test_resuming_another_architectures_checkpoint_names_the_mismatch(survey, tmp_path, capsys):
    """The checkpoint's record is checked before its weights are loaded: a lens_flow checkpoint met by
    `--arch lens_finder` is another architecture, not a damaged file."""
    folder, model = survey
    checkpoint = model.with_name(model.name.replace(".safetensors", ".ckpt.safetensors"))
    assert checkpoint.is_file()
    copy = tmp_path / "flow.safetensors"
    copy.write_bytes(model.read_bytes())
    copy.with_name("flow.ckpt.safetensors").write_bytes(checkpoint.read_bytes())
    capsys.readouterr()
    assert run("train", "-i", folder, "-m", copy, "--arch", "lens_finder", "--epochs", 2) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other architecture ('lens_flow', not 'lens_finder')" in err, err
    assert "damaged" not in err
