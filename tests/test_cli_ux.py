"""Issue 24 ("what the new user tripped over"): the warnings, refusals and messages of the command line,
each checked on the tiny fixtures with small T and few points."""

import json
import os

import numpy as np
import pytest

from test_cli import FAST, model, run_cli  # noqa: F401  (``model``: a fixture)


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("onnx2snn: warning:")]


def test_an_error_above_the_promise_is_a_warning_naming_the_options(model, tmp_path, capsys):
    """Item 3: --pieces 1 with bias correction only, T = 8, misses 5e-3·(32/8)^0.66 = 1.25e-2 and says so,
    naming what helps; the default conversion at T = 32 meets 4e-3 and is silent."""
    from onnx2snn.calibration.options import ConversionOptions, promised_error
    assert promised_error(ConversionOptions(timesteps=8, pieces=1)) == pytest.approx(5e-3 * 4 ** (np.log(2.5) / np.log(4)))
    assert promised_error(ConversionOptions(timesteps=32)) == pytest.approx(4e-3)
    assert promised_error(ConversionOptions(timesteps=32, tolerance=1e-2)) == 1e-2
    code, _, err = run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "light",
                           "--report-json", tmp_path / "r.json", *FAST)
    assert code == 0, err
    error = json.loads((tmp_path / "r.json").read_text())["validation"]["rel_l2_snn_vs_ann"]
    assert error > 1.25e-2
    (line,) = _warnings(err)
    assert f"SNN vs ANN error {error:.1e}".replace("e-0", "e-") in line and "above the 1.2e-2" in line
    assert "a larger -T, --pieces auto or --calibration finetune may help" in line
    code, _, err = run_cli(capsys, model, "-o", tmp_path / "auto.snn.onnx", "--report-json", tmp_path / "a.json",
                           *FAST)
    assert code == 0 and json.loads((tmp_path / "a.json").read_text())["validation"]["rel_l2_snn_vs_ann"] < 4e-3
    assert not _warnings(err)


def _converted(tmp_path, capsys, fixture: str) -> "Path":
    """A fast conversion of a fixture copied into ``tmp_path``: the artifact's path."""
    import shutil
    from conftest import FIXTURES
    path = tmp_path / fixture
    shutil.copy(FIXTURES / fixture, path)
    code, _, err = run_cli(capsys, path, "-T", 8, "--pieces", 1, "--calibration", "refit", *FAST)
    assert code == 0, err
    return path.with_name(path.name.replace(".onnx", ".snn.onnx"))


def _one_line_error(err: str, words: str) -> None:
    problems = [line for line in err.splitlines() if not line.startswith("[onnx2snn]")]
    assert len(problems) == 1 and words in problems[0] and "Traceback" not in err, err


def test_lowpass_refuses_points_that_are_not_a_grid(tmp_path, capsys):
    """Item 4, one coordinate: sorted and equally spaced points are a grid (either way round); shuffled
    points used to come back filtered into nonsense with exit 0, now exit 1 and nothing written."""
    artifact = _converted(tmp_path, capsys, "torch_sin.onnx")
    x = np.linspace(-1, 1, 200, dtype=np.float32)[:, None]
    for name, points in [("up", x), ("down", x[::-1])]:
        np.save(tmp_path / f"{name}.npy", points)
        code, _, err = run_cli(capsys, "run", artifact, "--input", tmp_path / f"{name}.npy", "--lowpass", "dct",
                               "-o", tmp_path / f"y_{name}.npy")
        assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y_down.npy"), np.load(tmp_path / "y_up.npy")[::-1], atol=1e-6)
    np.save(tmp_path / "shuffled.npy", x[np.random.default_rng(0).permutation(200)])
    code, _, err = run_cli(capsys, "run", artifact, "--input", tmp_path / "shuffled.npy", "--lowpass", "dct",
                           "-o", tmp_path / "bad.npy")
    assert code == 1 and not (tmp_path / "bad.npy").exists()
    _one_line_error(err, "not sorted and equally spaced")


def test_lowpass_on_a_grid_of_two_coordinates_filters_each_axis(model, tmp_path, capsys):
    """Item 4, two coordinates: refused without --grid; with --grid 12x10 (points of an 'ij' meshgrid
    flattened in C order) each grid axis is filtered, as filtering the [12, 10] array by hand, and the
    automatic cut-off brings the SNN closer to the ANN (onnxruntime on the original model)."""
    import onnxruntime as ort
    from onnx2snn.lowpass import lowpass
    assert run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "refit", *FAST)[0] == 0
    artifact = tmp_path / "pinn.snn.onnx"
    a, b = np.meshgrid(np.linspace(-1, 1, 12), np.linspace(0, 1, 10), indexing="ij")
    x = np.stack([a.ravel(), b.ravel()], axis=1).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = ["run", artifact, "--input", tmp_path / "x.npy"]
    code, _, err = run_cli(capsys, *run, "--lowpass", "dct", "-o", tmp_path / "refused.npy")
    assert code == 1 and not (tmp_path / "refused.npy").exists()
    _one_line_error(err, "give --grid N1xN2")
    code, _, err = run_cli(capsys, *run, "--lowpass", "dct", "--grid", "12x9")
    assert code == 1 and "--grid 12x9 has 108 points, the inputs have 120" in err
    code, _, err = run_cli(capsys, *run, "--lowpass", "dct", "--grid", "10x12")
    assert code == 1 and "not a regular 10x12 grid" in err
    code, _, err = run_cli(capsys, *run, "--grid", "12x10")
    assert code == 2 and "--grid describes the points for --lowpass" in err
    assert run_cli(capsys, *run, "-o", tmp_path / "raw.npy")[0] == 0
    code, _, err = run_cli(capsys, *run, "--lowpass", "dct", "--grid", "12x10", "--cutoff", "0.5",
                           "-o", tmp_path / "half.npy")
    assert code == 0, err
    raw = np.load(tmp_path / "raw.npy")
    by_hand = lowpass(raw.reshape(12, 10, 1), 0.5, (0, 1), "dct").reshape(120, 1)
    np.testing.assert_allclose(np.load(tmp_path / "half.npy"), by_hand, atol=1e-6)
    code, out, err = run_cli(capsys, *run, "--lowpass", "dct", "--grid", "12x10", "-o", tmp_path / "auto.npy")
    assert code == 0 and "(axes [0, 1])" in out, err
    session = ort.InferenceSession(str(tmp_path / "pinn.onnx"), providers=["CPUExecutionProvider"])
    ann = session.run(None, {"x": x})[0]
    error = lambda y: np.linalg.norm(y - ann) / np.linalg.norm(ann)
    assert error(np.load(tmp_path / "auto.npy")) <= error(raw)


def test_a_calibration_that_cannot_fit_in_memory_is_refused_up_front(model, tmp_path, capsys, monkeypatch):
    """Item 5: -T 100000 used to run two minutes into a MemoryError traceback.  The calibration's spike
    trains, 2.5 x T x 4 bytes x (512 points x 32 units) = 16.4 GB, are refused at once against 8 GB
    (the machine's memory, fixed here), naming the largest T that fits; T = 8 passes the same check."""
    import time
    from onnx2snn import resources
    assert resources.memory_bytes() > 0
    monkeypatch.setattr(resources, "memory_bytes", lambda: 8_000_000_000)
    assert resources.calibration_bytes([(512, 16), (512, 16)], 100_000, 4) == pytest.approx(16.384e9)
    started = time.perf_counter()
    code, _, err = run_cli(capsys, model, "-T", 100_000, *FAST)
    assert code == 1 and time.perf_counter() - started < 5
    _one_line_error(err, "calibrating at T=100000 on 512 points would need about 16.4 GB of memory")
    assert "8.0 GB is available; give a smaller -T (at most about 48828 here) or fewer --samples" in err
    assert not model.with_name("pinn.snn.onnx").exists()
    assert run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "light", *FAST)[0] == 0


def test_a_memory_error_anywhere_is_one_line(model, tmp_path, capsys, monkeypatch):
    """Item 5: a MemoryError the estimate did not foresee ends as one line, exit 1, nothing written; the
    traceback only with --traceback."""
    import importlib
    convert_module = importlib.import_module("onnx2snn.convert")

    def exhausted(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(convert_module, "calibrate", exhausted)
    code, _, err = run_cli(capsys, model, *FAST)
    assert code == 1 and not model.with_name("pinn.snn.onnx").exists()
    _one_line_error(err, "onnx2snn: error: out of memory; a smaller -T")
    with pytest.raises(MemoryError):
        run_cli(capsys, model, "--traceback", *FAST)


def test_run_memory_does_not_grow_with_T_and_a_long_run_says_how_long(model, tmp_path, capsys, monkeypatch):
    """Item 5: the runtimes keep no per-step values, so a run is not refused for its T; numpy's peak
    allocation at T = 800 stays that of T = 8 (within 10 %; tracemalloc sees numpy's buffers).  A run
    estimated to take long says so first (the per-update time raised here to make a short run long)."""
    import tracemalloc
    import runtimes
    from onnx2snn import resources
    assert run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "light", *FAST)[0] == 0
    snn = runtimes.load(tmp_path / "pinn.snn.onnx")
    x = np.random.default_rng(0).uniform(0, 1, (2000, 2)).astype(np.float32)
    peaks = {}
    for T in (8, 800):
        snn.run({"x": x}, timesteps=T)
        tracemalloc.start()
        snn.run({"x": x}, timesteps=T)
        peaks[T] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[800] < 1.1 * peaks[8], peaks
    assert resources.run_seconds(4096, 100_000, 428) == pytest.approx(87.6, rel=0.01)
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setattr(resources, "UPDATE_SECONDS", 1e-6)
    code, _, err = run_cli(capsys, "run", tmp_path / "pinn.snn.onnx", "--input", tmp_path / "x.npy", "-T", 200)
    assert code == 0, err
    assert "[onnx2snn] simulating 2,000 points x T=200 x 32 neurons: about 13 s in the numpy runtime" in err


def test_run_warns_about_points_outside_the_domain(model, tmp_path, capsys):
    """Item 6: points outside the calibrated domain (x=-1:1,0:1) ran silently into wrong values: 20 of 60
    points pushed out now get a warning with the count and the domain, and there the SNN is indeed far
    from the ANN (onnxruntime) while inside it is close.  The domain's bounds themselves are inside."""
    import onnxruntime as ort
    from onnx2snn.domain import count_outside, parse_domain
    box = parse_domain("x=-1:1,0:1")
    assert count_outside(box, {"x": np.array([[-1, 0], [1, 1], [0, 1.001], [1.5, 0.5]], np.float32)}) == (2, 4)
    assert count_outside(parse_domain("x=-1:1;t=0:1"), {"x": np.zeros((3, 1)), "t": np.full((5, 1), 2.0)}) == (5, 8)
    assert run_cli(capsys, model, "-T", 16, "--pieces", 1, "--calibration", "refit", *FAST)[0] == 0
    rng = np.random.default_rng(0)
    inside = np.stack([rng.uniform(-1, 1, 40), rng.uniform(0, 1, 40)], axis=1)
    outside = np.stack([rng.uniform(2, 3, 20), rng.uniform(1.5, 2.5, 20)], axis=1)
    x = np.concatenate([inside, outside]).astype(np.float32)
    for name, points in [("in", x[:40]), ("all", x)]:
        np.save(tmp_path / f"{name}.npy", points)
        code, _, err = run_cli(capsys, "run", tmp_path / "pinn.snn.onnx", "--input", tmp_path / f"{name}.npy",
                               "-o", tmp_path / f"y_{name}.npy")
        assert code == 0, err
        assert _warnings(err) == ([] if name == "in" else [
            "onnx2snn: warning: 20 of 60 points lie outside the artifact's domain x=-1:1,0:1; its thresholds "
            "were calibrated there, so outputs outside it may be wrong"])
    ann = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    y = np.load(tmp_path / "y_all.npy")
    error = lambda rows: np.linalg.norm(y[rows] - ann[rows]) / np.linalg.norm(ann[rows])
    assert error(slice(40, None)) > 5 * error(slice(None, 40))


def test_a_cold_kernel_cache_is_announced_before_compiling(model, tmp_path, capsys, monkeypatch):
    """Item 8: the first conversion compiled numba's kernels for ~13 s in silence.  With an empty cache
    (a fresh NUMBA_CACHE_DIR, checked in a child process) ``needs_compile`` is True; once the kernels are
    compiled or loaded it is False, and convert says 'compiling' only while it is True."""
    import subprocess
    import sys
    from conftest import ROOT
    from runtimes import kernels
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", "import runtimes.kernels as k; print(k.needs_compile())"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
    line = "[onnx2snn] compiling spiking kernels (first run only, cached afterwards)"
    assert run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "light", *FAST)[0] == 0
    assert not kernels.needs_compile()
    code, _, err = run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "light", *FAST)
    assert code == 0 and line not in err
    monkeypatch.setattr(kernels, "needs_compile", lambda: True)
    code, _, err = run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "light", *FAST)
    assert code == 0 and err.count(line) == 1 and err.index(line) < err.index("calibrating")


def test_help_stays_fast():
    """Item 8: ``onnx2snn --help`` (import and parse, measured in a child process) under 0.5 s."""
    import subprocess
    import sys
    from conftest import ROOT
    script = ("import time; t = time.perf_counter()\nimport onnx2snn.cli\ntry:\n    onnx2snn.cli.main(['--help'])\n"
              "except SystemExit:\n    pass\nprint(time.perf_counter() - t)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert float(done.stdout.strip().splitlines()[-1]) < 0.5, done.stdout[-300:]


def _layer_norm_model(path) -> None:
    """2-16-16-16-1 tanh network with a LayerNormalization before the second tanh: x → Gemm a → tanh → Gemm b → LayerNorm → tanh → Gemm c → tanh → Gemm d → u."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    sizes = {"a": (2, 16), "b": (16, 16), "c": (16, 16), "d": (16, 1)}
    inits = []
    for name, (m, n) in sizes.items():
        inits += [numpy_helper.from_array((rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32), f"W{name}"),
                  numpy_helper.from_array((0.1 * rng.standard_normal(n)).astype(np.float32), f"b{name}")]
    inits += [numpy_helper.from_array(np.ones(16, np.float32), "gamma"),
              numpy_helper.from_array(np.zeros(16, np.float32), "beta")]
    gemm = lambda name, x: helper.make_node("Gemm", [x, f"W{name}", f"b{name}"], [f"z{name}"], f"/{name}/Gemm")
    nodes = [gemm("a", "x"), helper.make_node("Tanh", ["za"], ["ha"], "/Tanh"), gemm("b", "ha"),
             helper.make_node("LayerNormalization", ["zb", "gamma", "beta"], ["nb"], "/norm", axis=-1),
             helper.make_node("Tanh", ["nb"], ["hb"], "/Tanh_1"), gemm("c", "hb"),
             helper.make_node("Tanh", ["zc"], ["hc"], "/Tanh_2"), gemm("d", "hc")]
    nodes[-1].output[0] = "u"
    graph = helper.make_graph(nodes, "layer_norm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                              [helper.make_tensor_value_info("u", TensorProto.FLOAT, ["batch", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"onnx2snn.domain": "x=-1:1,-1:1"})
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_the_summary_says_how_much_of_the_network_spikes(tmp_path, capsys):
    """Item 2: the LayerNorm between Gemm b and the second tanh is analog (a Decode before it), and the tanh
    it feeds becomes a directly encoded spiking layer, so 3 of 3 hidden layers spike; of the ANN's
    2·16 + 16·16 + 16·16 + 16 = 560 MACs only the first layer's 32 stay MACs (direct encoding): 528/560 =
    94 % became synaptic operations.  The SNN's energy counts those MACs and the synaptic operations."""
    from onnx2snn.energy import load_tables
    path = tmp_path / "norm.onnx"
    _layer_norm_model(path)
    code, out, err = run_cli(capsys, path, "-T", 8, "--pieces", 1, "--calibration", "refit",
                             "--report-json", tmp_path / "r.json", *FAST)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ann_macs_per_sample"] == 560
    assert report["first_layer_macs_per_sample"] + report["analog_macs_per_sample"] == 32
    assert report["spiking_mac_fraction"] == pytest.approx(528 / 560)
    assert "94% of the ANN's MACs became synaptic operations; 3 of 3 hidden layers spike" in out
    mac, fp32 = load_tables()["45nm_fp32"]["mac"], report["energy"]["45nm_fp32"]
    assert fp32["snn_pj"] >= 32 * mac + report["synops_per_sample"] * load_tables()["45nm_fp32"]["synop"]
