"""Low-pass post-processing of gridded outputs: DCT and mirrored FFT, cut-off choice, the `run` option."""

import re
import shutil

import numpy as np
import onnx
import pytest

from conftest import FIXTURES, MODELS
from onnx2snn.cli import main
from onnx2snn.lowpass import choose_cutoff, grid_axes, lowpass

X = np.linspace(-1, 1, 256)[:, None]
T = np.linspace(0, 1, 100)[None, :]
SMOOTH = np.sin(np.pi * X) * np.exp(-T) + 0.3 * X          # not periodic along either axis


@pytest.mark.parametrize("method", ["dct", "fft"])
def test_full_cutoff_is_the_identity(method):
    np.testing.assert_allclose(lowpass(SMOOTH, 1.0, (0, 1), method), SMOOTH, atol=1e-12)


def test_dct_equals_fft_of_the_mirrored_signal():
    """DCT-II is the Fourier series of the even extension: keeping the same modes gives the same signal."""
    rough = SMOOTH + 0.01 * np.random.default_rng(0).normal(size=SMOOTH.shape)
    for fraction in (0.03, 0.2, 0.6):
        np.testing.assert_allclose(lowpass(rough, fraction, (0, 1), "dct"), lowpass(rough, fraction, (0, 1), "fft"),
                                   atol=1e-10)


def test_mirror_extension_avoids_gibbs_ringing_at_the_boundaries():
    ramp = np.linspace(0, 1, 200)[:, None]
    filtered = lowpass(ramp, 0.05, (0,), "dct")
    periodic = np.fft.irfft(np.where(np.arange(101) < 10, np.fft.rfft(ramp[:, 0]), 0), 200)
    assert np.abs(filtered - ramp).max() < 0.02 < 0.2 < np.abs(periodic - ramp[:, 0]).max()


def test_filtering_a_staircase_brings_it_back_towards_the_smooth_solution():
    staircase = np.round(SMOOTH * 16) / 16                    # a rate code's quantisation
    fraction = choose_cutoff(staircase, SMOOTH, (0, 1))
    before = np.linalg.norm(staircase - SMOOTH)
    after = np.linalg.norm(lowpass(staircase, fraction, (0, 1)) - SMOOTH)
    assert fraction < 0.5 and after < before / 3


def test_only_the_symbolic_axes_are_grid_axes():
    assert grid_axes(onnx.load(MODELS / "spinn_burgers.onnx"), "u") == (0, 1)
    assert grid_axes(onnx.load(MODELS / "poisson1d.onnx"), "u") == (0,)


def test_run_lowpass_reports_before_and_after(tmp_path, capsys):
    model = tmp_path / "sin.onnx"
    shutil.copy(FIXTURES / "torch_sin.onnx", model)
    assert main([str(model), "--pieces", "1", "-T", "8", "--calibration", "refit", "--samples", "512",
                 "--validation-points", "128"]) == 0
    snn = tmp_path / "sin.snn.onnx"
    np.save(tmp_path / "x.npy", np.linspace(-1, 1, 1000, dtype=np.float32)[:, None])
    capsys.readouterr()
    argv = ["run", str(snn), "--input", str(tmp_path / "x.npy")]
    assert main(argv + ["-o", str(tmp_path / "raw.npy")]) == 0
    assert main(argv + ["--lowpass", "dct", "-o", str(tmp_path / "low.npy")]) == 0
    found = re.search(r"rel L2 vs ANN (\S+) before, (\S+) after", capsys.readouterr().out)
    assert float(found[2]) < float(found[1])
    raw, low = np.load(tmp_path / "raw.npy"), np.load(tmp_path / "low.npy")
    assert raw.shape == low.shape and not np.array_equal(raw, low)
    model.unlink()                                            # no reference any more: auto needs one
    assert main(argv + ["--lowpass", "dct", "-o", str(tmp_path / "low2.npy")]) == 2
    assert "--cutoff auto needs the original network" in capsys.readouterr().err
    assert main(argv + ["--lowpass", "fft", "--cutoff", "0.1", "-o", str(tmp_path / "low3.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "low3.npy"), lowpass(raw, 0.1, (0,), "fft"), atol=1e-6)
