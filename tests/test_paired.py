"""The paired ring design: simulation (shared noise, rings), paired m and c, and their scoring."""

import json

import numpy as np
import pytest
from astropy.io import fits

from lensml.cli import main
from lensml.metrics.shear import paired_shear_bias
from lensml.simulate.weak import PairDesign, WeakSimConfig
from lensml.simulate.weak_files import simulate_weak


def test_paired_bias_equals_a_hand_calculation():
    # two base galaxies, one pair each: galaxy 0 sheared along g1, galaxy 1 along g2, G = 0.02
    g = np.array([[0.0210, 0.0010], [-0.0190, 0.0012],   # pair 0: +g1, -g1
                  [0.0030, 0.0195], [0.0010, -0.0215]])  # pair 1: +g2, -g2
    sign, component, pair, base = np.array([1, -1, 1, -1]), np.array([1, 1, 2, 2]), np.array([0, 0, 1, 1]), \
        np.array([0, 0, 1, 1])
    out = paired_shear_bias(g, sign, component, pair, base, 0.02, n_boot=50)
    assert out["m1"] == pytest.approx((0.0210 + 0.0190) / 2 / 0.02 - 1)  # = 0
    assert out["m2"] == pytest.approx((0.0195 + 0.0215) / 2 / 0.02 - 1)  # = +0.025
    assert out["c1"] == pytest.approx((0.0210 - 0.0190 + 0.0030 + 0.0010) / 4)
    assert out["c2"] == pytest.approx((0.0010 + 0.0012 + 0.0195 - 0.0215) / 4)
    assert (out["n_pairs"], out["n_galaxies"]) == (2, 2)
    assert out["sigma_g1"] == pytest.approx(np.std(g[:, 0]))
    # with responses: the sum of R divides
    response = np.tile(np.diag([0.5, 0.25]), (4, 1, 1))
    scaled = paired_shear_bias(g * [0.5, 0.25], sign, component, pair, base, 0.02, response=response, n_boot=50)
    assert scaled["m2"] == pytest.approx(out["m2"]) and scaled["c1"] == pytest.approx(out["c1"])
    # a failed member drops its whole pair
    g_failed = g.copy()
    g_failed[1] = np.nan
    dropped = paired_shear_bias(g_failed, sign, component, pair, base, 0.02, n_boot=50)
    assert dropped["n_pairs"] == 1 and np.isnan(dropped["m1"]) and dropped["m2"] == pytest.approx(out["m2"])


def test_bootstrap_error_matches_the_scatter_of_m():
    """On synthetic estimates with known noise, the bootstrap error is the spread of m over repeats."""
    def draw(rng, n=400):
        base = np.repeat(np.arange(n), 2)
        sign = np.tile([1, -1], n)
        comp = 1 + base % 2
        truth = np.zeros((2 * n, 2))
        truth[np.arange(2 * n), comp - 1] = 0.02 * sign
        g = 1.01 * truth + rng.normal(0, 0.01, (2 * n, 2))
        return paired_shear_bias(g, sign, comp, base, base, 0.02, n_boot=300, seed=1)

    runs = [draw(np.random.default_rng(k)) for k in range(40)]
    spread = np.std([r["m1"] for r in runs])
    assert np.mean([r["m1"] for r in runs]) == pytest.approx(0.01, abs=3 * spread / np.sqrt(40))
    assert np.mean([r["m1_err"] for r in runs]) == pytest.approx(spread, rel=0.3)


def test_pairs_share_noise_and_rings_rotate_the_galaxy(tmp_path):
    design = PairDesign(ring=4, shear=0.02)
    kw = dict(stamp_size=32, pixel_scale=0.2, psf_fwhm=0.7, psf_e_max=0.0, hlr=(0.5, 0.5), e_int_sigma=0.3,
              shift_radius=0.5)
    noisy = simulate_weak(WeakSimConfig(**kw, noise=True, snr=(20.0, 20.0)), 8, tmp_path / "noisy", seed=3,
                          progress=False, pairs=design)
    clean = simulate_weak(WeakSimConfig(**kw), 8, tmp_path / "clean", seed=3, progress=False, pairs=design)
    entries = json.loads(noisy.read_text())
    assert [e["sign"] for e in entries] == [1, -1] * 4 and [e["ring"] for e in entries] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert {e["component"] for e in entries} == {1} and [e["g1"] for e in entries[:2]] == [0.02, -0.02]
    betas = [e["beta_int_deg"] for e in entries[::2]]
    assert np.allclose(np.diff(betas) % 180, 45)
    img = {(k, i): fits.getdata(tmp_path / k / f"gal_{i}.fits").astype(float) for k in ("noisy", "clean")
           for i in range(8)}
    peak = img["clean", 0].max()
    # the two members of a pair differ by the shear alone: the same noise realisation
    np.testing.assert_allclose(img["noisy", 0] - img["noisy", 1], img["clean", 0] - img["clean", 1], atol=1e-5 * peak)
    # ... and the noise is there (SNR 20), and differs between orientations
    assert np.std(img["noisy", 0] - img["clean", 0]) > 1e-3 * peak
    assert not np.allclose(img["noisy", 2] - img["clean", 2], img["noisy", 0] - img["clean", 0])


def test_evaluate_scores_pairs_beside_hsm_and_anacal_and_refuses_a_lone_member(tmp_path, trained_model, capsys):
    """HSM REGAUSS with its responsivity and AnaCal on a noise-free paired set: m within 2% and 0.2%, c ~ 0."""
    data = tmp_path / "pairs"
    assert main(["-q", "simulate", "weak", "--pairs", "-n", "40", "--ring", "4", "-o", str(data), "--seed", "5",
                 "--workers", "1"]) == 0
    out = tmp_path / "scores.json"
    assert main(["-q", "evaluate", "-i", str(data), "-m", str(trained_model), "--json", str(out), "--anacal",
                 "--metacal"]) == 0
    results = json.loads(out.read_text())
    hsm = results["hsm"]["paired"]
    anacal = results["anacal"]["paired"]  # AnaCal's analytic response: m is the g^2 term, a few 1e-4
    assert abs(anacal["m1"]) < 2e-3 and abs(anacal["m2"]) < 2e-3 and abs(anacal["c2"]) < 1e-4
    assert results["paired"]["n_pairs"] == hsm["n_pairs"] == 160 and hsm["n_galaxies"] == 40
    assert abs(hsm["m1"]) < 0.02 and abs(hsm["m2"]) < 0.02 and abs(hsm["c1"]) < 1e-3
    assert 1.5 < hsm["responsivity"] < 2
    metacal = results["metacal"]  # the network's own response, measured on the counterfactual images
    assert metacal["paired"]["n_pairs"] == 160 and np.isfinite(metacal["paired"]["m1"])
    assert np.all(np.isfinite(metacal["response_mean"]))
    assert "paired design" in capsys.readouterr().out
    csv_path = tmp_path / "mc.csv"
    assert main(["-q", "predict", "-i", str(data), "-m", str(trained_model), "--metacal", "-o", str(csv_path)]) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "index,galaxy,g1,g2,R11,R12,R21,R22" and len(lines) == 321
    manifest = data / "data.json"
    entries = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(entries[:-1]))
    assert main(["-q", "evaluate", "-i", str(data), "-m", str(trained_model)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pair 159 (gal_318.fits) has no -g partner" in err


def test_several_paired_sets_score_as_the_one_set_they_were_split_from(tmp_path, trained_model, capsys):
    """Two halves of a paired set, each numbered from 0 (as two separately drawn sets are), scored
    together give the whole set's figures exactly: IDs renumbered, not merged, and the metacal
    correction noise of each pair the same as when scored whole."""
    data = tmp_path / "pairs"
    assert main(["-q", "simulate", "weak", "--pairs", "-n", "12", "--ring", "2", "-o", str(data), "--seed", "8",
                 "--workers", "1", "--noise", "--snr", "40"]) == 0
    entries = json.loads((data / "data.json").read_text())
    half = len(entries) // 2
    first, second = entries[:half], [dict(e) for e in entries[half:]]
    pair0, base0 = second[0]["pair"], second[0]["base"]
    for e in second:  # numbered from 0, as a set drawn on its own is: the IDs collide with the first half's
        e["pair"] -= pair0
        e["base"] -= base0
    (data / "a.json").write_text(json.dumps(first))
    (data / "b.json").write_text(json.dumps(second))
    whole, split = tmp_path / "whole.json", tmp_path / "split.json"
    flags = ["-m", str(trained_model), "--metacal", "--views", "2"]
    assert main(["-q", "evaluate", "-i", str(data), "--json", str(whole), *flags]) == 0
    assert main(["-q", "evaluate", "-i", str(data / "a.json"), str(data / "b.json"), "--json", str(split),
                 *flags]) == 0
    assert "2 sets scored as one: 48 stamps" in capsys.readouterr().out
    whole, split = json.loads(whole.read_text()), json.loads(split.read_text())
    assert split["data"] == [str(data / "a.json"), str(data / "b.json")]
    for key in ("paired", "metacal", "hsm"):
        assert split[key] == whole[key], key
    assert whole["paired"]["n_galaxies"] == 12 and whole["metacal"]["paired"]["n_pairs"] == 24
    # a set of other |g| is not silently pooled
    for e in second:
        e[f"g{e['component']}"] *= 2
    (data / "b.json").write_text(json.dumps(second))
    assert main(["-q", "evaluate", "-i", str(data / "a.json"), str(data / "b.json"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different |g|" in err
