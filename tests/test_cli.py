"""The command line, called in-process: outputs, report keys, exit codes, and every bad input."""

import json
import os
import shutil
import stat

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import FIXTURES
from onnx2snn.cli import main

REPORT_KEYS = {"model", "timesteps", "validation", "layers", "spike_rate", "spikes_per_sample",
               "synops_per_sample", "ann_macs_per_sample", "energy_pj_per_sample", "timing_s"}
FAST = ["--samples", "512", "--validation-points", "256"]


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "pinn.onnx"
    shutil.copy(FIXTURES / "torch_tanh_gemm.onnx", path)
    return path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_bare_command_converts_with_defaults(model, tmp_path, capsys):
    before = model.read_bytes()
    code, out, err = run_cli(capsys, model, "--report-json", tmp_path / "r.json", *FAST)
    assert code == 0, err
    assert (tmp_path / "pinn.snn.onnx").exists() and model.read_bytes() == before
    report = json.loads((tmp_path / "r.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report["timesteps"] == 32 and report["validation"]["points"] == 256
    assert set(report["validation"]) >= {"rel_l2_snn_vs_ann", "max_abs_snn_vs_ann"}
    assert {"snn_45nm", "ann_45nm"} <= set(report["energy_pj_per_sample"])
    assert set(report["energy"]) >= {"45nm_fp32", "45nm_int8", "loihi"}
    assert "compute only" in out and all(name in out for name in report["energy"])
    assert {"convert", "calibrate"} <= set(report["timing_s"])
    assert report["layers"][0].keys() >= {"name", "activation", "neurons", "spike_rate"}
    assert "relative L2" in out


def test_convert_options_and_run(model, tmp_path, capsys):
    out_path = tmp_path / "snn.onnx"
    code, _, err = run_cli(capsys, "convert", model, "-o", out_path, "-T", 16, "--pieces", 1,
                           "--calibration", "light+refit", "--threshold", "percentile:99.5", "--neuron", "floor",
                           "--domain", "x=-1:1,0:1", *FAST)
    assert code == 0, err
    meta = {p.key: p.value for p in onnx.load(out_path).metadata_props}
    assert meta["onnx2snn.timesteps"] == "16" and meta["onnx2snn.neuron"] == "floor"
    x = np.random.default_rng(0).uniform(0, 1, (10, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(capsys, "run", out_path, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert code == 0, err
    assert np.load(tmp_path / "y.npy").shape == (10, 1)
    code, _, _ = run_cli(capsys, "run", out_path, "--input", f"x={tmp_path / 'x.npy'}", "-o", tmp_path / "y2.npy",
                         "-T", 4)
    assert code == 0 and not np.allclose(np.load(tmp_path / "y2.npy"), np.load(tmp_path / "y.npy"))


def test_finetune_iterations_reach_the_calibration(model, tmp_path, capsys):
    """--finetune-iterations sets the end-to-end fit's steps (after two runs of 16x as many noisy analog
    ones): one step (16 analog per run) barely moves from the layer-by-layer result."""
    errors = {}
    for steps in (1, 600):
        code, _, err = run_cli(capsys, model, "--pieces", 1, "--finetune-iterations", steps, "-o",
                               tmp_path / f"{steps}.snn.onnx", "--report-json", tmp_path / f"{steps}.json", *FAST)
        assert code == 0, err
        report = json.loads((tmp_path / f"{steps}.json").read_text())
        assert report["calibration"] == "finetune" and report["finetune_iterations"] == steps
        assert report["finetune_analog_iterations"] == 16 * steps
        errors[steps] = report["validation"]["rel_l2_snn_vs_ann"]
    assert errors[600] < 0.7 * errors[1]


def test_converting_an_artifact_again_says_what_it_is(model, tmp_path, capsys):
    assert run_cli(capsys, model, "--pieces", 1, "-T", 8, *FAST)[0] == 0
    code, _, err = run_cli(capsys, tmp_path / "pinn.snn.onnx", "-o", tmp_path / "again.onnx", *FAST)
    assert code == 1 and "already a spiking artifact written by onnx2snn" in err
    assert len(err.strip().splitlines()) <= 2 and not (tmp_path / "again.onnx").exists()


def test_run_on_a_torch_device(model, tmp_path, capsys):
    """--device picks snnTorch's device; its outputs are numpy's (same spikes); misuse is one line."""
    pytest.importorskip("snntorch")
    import torch
    assert run_cli(capsys, model, "-T", 8, "--pieces", 1, *FAST)[0] == 0
    np.save(tmp_path / "x.npy", np.random.default_rng(1).uniform(-1, 1, (50, 2)).astype(np.float32))
    artifact, x = tmp_path / "pinn.snn.onnx", tmp_path / "x.npy"
    assert run_cli(capsys, "run", artifact, "--input", x, "-o", tmp_path / "numpy.npy")[0] == 0
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        code, out, err = run_cli(capsys, "run", artifact, "--input", x, "--backend", "snntorch", "--device", device,
                                 "-o", tmp_path / f"{device}.npy")
        assert code == 0, err
        np.testing.assert_allclose(np.load(tmp_path / f"{device}.npy"), np.load(tmp_path / "numpy.npy"),
                                   rtol=0, atol=1e-5)
    code, _, err = run_cli(capsys, "run", artifact, "--input", x, "--device", "cpu")
    assert code == 2 and "--device is for --backend snntorch" in err
    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, "run", artifact, "--input", x, "--backend", "snntorch", "--device", "cuda")
        assert code == 1 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1


def test_run_multi_output_writes_npz(tmp_path, capsys):
    path = tmp_path / "multi.onnx"
    shutil.copy(FIXTURES / "torch_multi_io.onnx", path)
    assert run_cli(capsys, path, *FAST)[0] == 0
    np.save(tmp_path / "x.npy", np.zeros((4, 1), np.float32))
    np.save(tmp_path / "t.npy", np.full((4, 1), 0.5, np.float32))
    code, _, err = run_cli(capsys, "run", tmp_path / "multi.snn.onnx", "--input", f"x={tmp_path / 'x.npy'}",
                           "--input", f"t={tmp_path / 't.npy'}", "-o", tmp_path / "y.npz")
    assert code == 0, err
    with np.load(tmp_path / "y.npz") as y:
        assert sorted(y.files) == ["u", "v"] and y["u"].shape == (4, 1)


def test_inspect_lists_layers_and_reasons(capsys):
    code, out, _ = run_cli(capsys, "inspect", FIXTURES / "torch_fourier.onnx")
    assert code == 0
    assert "2 spiking layer(s)" in out and "Tanh" in out
    assert "/Concat (Concat)" in out and "stay analog" in out


def test_inspect_shows_the_anns_cost_and_the_break_even_spike_budget(capsys):
    """2-16-16-1: 32 + 256 + 16 = 304 MACs; break-even at 45 nm fp32 = E_ANN / (0.9 pJ x 16·16 + 16·1
    synapses), E_ANN = 304 x 4.6 + 32 tanh x 4.6 + 33 bias adds x 0.9."""
    code, out, _ = run_cli(capsys, "inspect", FIXTURES / "torch_tanh_gemm.onnx")
    assert code == 0
    assert "ANN per sample: 304 MACs, 32 activations" in out
    energy = 304 * 4.6 + 32 * 4.6 + 33 * 0.9
    assert f"break-even {energy / (0.9 * (16 * 16 + 16)):.2f} spikes per neuron" in out


def test_a_users_energy_table_is_reported_beside_the_shipped_ones(model, tmp_path, capsys):
    table = tmp_path / "chip.json"
    table.write_text(json.dumps({"mychip": {"mac": 2.0, "synop": 0.5, "neuron_update": 1.0, "activation": 2.0,
                                            "add": 0.5, "mult": 1.0}}))
    code, out, err = run_cli(capsys, model, "--energy-table", table, "--report-json", tmp_path / "r.json", *FAST)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["energy"]) >= {"45nm_fp32", "mychip"} and "mychip" in out
    mine = report["energy"]["mychip"]
    assert mine["ann_pj"] == pytest.approx(304 * 2.0 + 32 * 2.0 + 33 * 0.5)
    table.write_text("{not json")
    code, _, err = run_cli(capsys, model, "--energy-table", table, "-o", tmp_path / "x.snn.onnx", *FAST)
    assert code == 1 and "chip.json: cannot read the energy table" in err
    assert not (tmp_path / "x.snn.onnx").exists()


def test_target_error_prints_the_search_and_reports_it(model, tmp_path, capsys):
    code, out, err = run_cli(capsys, model, "--target-error", 0.05, "--finetune-iterations", 20,
                             "--report-json", tmp_path / "r.json", *FAST)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["target_error"] == 0.05 and report["search"]
    assert "searched for the cheapest SNN within 0.05" in out and "search: pwl, T=8" in err
    assert report["validation"]["rel_l2_snn_vs_ann"] <= 0.05
    code, _, err = run_cli(capsys, model, "--target-error", 0.05, "-T", 16, "--pieces", 1)
    assert code == 2 and "--target-error searches -T, --pieces itself" in err
    code, _, err = run_cli(capsys, model, "--energy-model", "loihi")
    assert code == 2 and "--energy-model chooses what --target-error minimises" in err


def _bad_model(tmp_path, kind):
    path = tmp_path / f"{kind}.onnx"
    source = FIXTURES / "torch_tanh_gemm.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_onnx":
        path.write_text("this is not a protobuf \x00\xff" * 10)
    elif kind == "truncated":
        path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    elif kind in ("nan", "external_outside", "external_missing"):
        model = onnx.load(source)
        if kind == "nan":
            w = numpy_helper.to_array(model.graph.initializer[0]).copy()
            w.flat[0] = np.nan
            model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, model.graph.initializer[0].name))
            onnx.save(model, path)
        else:
            onnx.save(model, path, save_as_external_data=True, location="w.data", size_threshold=0)
            model = onnx.load(path, load_external_data=False)
            for t in model.graph.initializer:
                for e in t.external_data:
                    if e.key == "location":
                        e.value = "../../etc/passwd" if kind == "external_outside" else "gone.data"
            onnx.save(model, path)
    return path


@pytest.mark.parametrize("kind, words", [
    ("missing", "no such file"), ("empty", "empty"), ("not_onnx", "not a valid ONNX"),
    ("truncated", "truncated.onnx"), ("nan", "NaN or Inf"), ("external_outside", "outside the model's folder"),
    ("external_missing", "gone.data"),
])
def test_bad_model_files(tmp_path, capsys, kind, words):
    path = tmp_path / "missing.onnx" if kind == "missing" else _bad_model(tmp_path, kind)
    before = path.read_bytes() if path.exists() else None
    code, out, err = run_cli(capsys, path, *FAST)
    assert code == 1
    problems = [line for line in err.splitlines() if not line.startswith("[onnx2snn]")]   # progress lines
    assert words in err and "Traceback" not in err and len(problems) == 1, err
    assert not (tmp_path / f"{kind}.snn.onnx").exists()
    assert (path.read_bytes() if path.exists() else None) == before


@pytest.mark.parametrize("args, words", [
    (["--domain", "x=1:-1,0:1"], "lower bound"),
    (["--domain", "x=-1:1"], "has 1 interval(s) but the input has 2"),
    (["--domain", "q=-1:1,0:1"], "unknown input(s) ['q']"),
    (["--domain", "x=a:b,0:1"], "not LO:HI"),
])
def test_bad_domains(model, capsys, args, words):
    code, _, err = run_cli(capsys, model, *args, *FAST)
    assert code == 1 and words in err, err
    assert not model.with_name("pinn.snn.onnx").exists()


def test_missing_domain_says_how_to_give_it(tmp_path, capsys):
    model = onnx.load(FIXTURES / "torch_tanh_gemm.onnx")
    del model.metadata_props[:]
    path = tmp_path / "nometa.onnx"
    onnx.save(model, path)
    code, _, err = run_cli(capsys, path, *FAST)
    assert code == 1 and "--domain x=LO:HI,LO:HI" in err


@pytest.mark.parametrize("calib, words", [
    (np.full((64, 2), np.nan, np.float32), "NaN"),
    (np.zeros((64, 3), np.float32), "shape [64, 3]"),
])
def test_bad_calibration_data(model, tmp_path, capsys, calib, words):
    np.save(tmp_path / "c.npy", calib)
    code, _, err = run_cli(capsys, model, "--calib", tmp_path / "c.npy", *FAST)
    assert code == 1 and words in err and "calibration data" in err, err


def test_output_paths(model, tmp_path, capsys):
    code, _, err = run_cli(capsys, model, "-o", model, *FAST)
    assert code == 1 and "overwrite the input" in err
    code, _, err = run_cli(capsys, model, "-o", tmp_path / "nope" / "out.onnx", *FAST)
    assert code == 1 and "does not exist" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pinn.onnx"]


def test_written_files_get_the_mode_of_a_plain_open(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the file must end up as open() would make it (0666
    less the umask), or keep the mode of the file it replaces."""
    from onnx2snn.saving import atomic_write
    previous = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.snn.onnx", lambda tmp: tmp.write_bytes(b"first"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.chmod(path, 0o640)
        atomic_write(path, lambda tmp: tmp.write_bytes(b"second"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"second"
    finally:
        os.umask(previous)
    assert [p.name for p in tmp_path.iterdir()] == ["a.snn.onnx"]


@pytest.mark.parametrize("args", [["-T", "0"], ["-T", "-3"], ["--pieces", "0"], ["--neuron", "ceil"],
                                  ["--finetune-iterations", "0"], []])
def test_usage_errors_exit_2(model, capsys, args):
    argv = [model, *args] if args else []
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "Traceback" not in err


def test_run_rejects_non_artifact_and_bad_inputs(model, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    code, _, err = run_cli(capsys, "run", model, "--input", tmp_path / "x.npy")
    assert code == 1 and "not an onnx2snn artifact" in err
    assert run_cli(capsys, model, *FAST)[0] == 0
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    code, _, err = run_cli(capsys, "run", tmp_path / "pinn.snn.onnx", "--input", tmp_path / "bad.npy",
                           "-o", tmp_path / "y.npy")
    assert code == 1 and "input 'x': shape [3, 5]" in err
    assert not (tmp_path / "y.npy").exists()


def test_verify_runs_every_installed_backend(model, tmp_path, capsys):
    assert run_cli(capsys, model, "--pieces", 2, "-T", 8, *FAST)[0] == 0
    code, out, err = run_cli(capsys, "verify", tmp_path / "pinn.snn.onnx", "--points", 64,
                             "--report-json", tmp_path / "v.json")
    assert code == 0, err
    import runtimes
    expected = set(runtimes.available_backends()) - {"numpy"}
    if "snntorch" in expected:
        import torch
        expected |= {"snntorch-cuda"} if torch.cuda.is_available() else set()
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["ok"] and set(report["backends"]) == expected
    assert "agree" in out


def test_standard_onnx_runs_in_plain_onnxruntime(model, tmp_path, capsys):
    import onnxruntime as ort
    import runtimes
    assert run_cli(capsys, model, "--pieces", 3, "-T", 8, *FAST)[0] == 0
    code, _, err = run_cli(capsys, "standard", tmp_path / "pinn.snn.onnx", "-o", tmp_path / "std.onnx")
    assert code == 0, err
    standard = onnx.load(tmp_path / "std.onnx")
    onnx.checker.check_model(standard, full_check=True)
    assert all(node.domain in ("", "ai.onnx") for node in standard.graph.node)
    x = np.random.default_rng(3).uniform(0, 1, (20, 2)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "std.onnx"), providers=["CPUExecutionProvider"])
    y = session.run(["u"], {"x": x})[0]
    expected = runtimes.load(tmp_path / "pinn.snn.onnx").run({"x": x})["u"]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_same_seed_gives_byte_identical_artifact(model, tmp_path, capsys):
    for name in ("a.onnx", "b.onnx"):
        assert run_cli(capsys, model, "-o", tmp_path / name, "--seed", 7, *FAST)[0] == 0
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_ctrl_c_during_calibration_exits_130_and_writes_nothing(model, tmp_path, capsys, monkeypatch):
    import importlib
    convert_module = importlib.import_module("onnx2snn.convert")   # the module, not the function of that name

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(convert_module, "calibrate", interrupted)
    code, _, err = run_cli(capsys, model, "--report-json", tmp_path / "r.json", *FAST)
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pinn.onnx"]


def _fixed_batch_copy(tmp_path, batch=4, reshape=False):
    """The tanh fixture as torch exports it without dynamic axes: ``x: [4, 2]``, ``u: [4, 1]``; with
    ``reshape`` the graph also bakes the size into a ``Reshape`` to ``[4, 2]``."""
    model = onnx.load(FIXTURES / "torch_tanh_gemm.onnx")
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    if reshape:
        model.graph.initializer.append(numpy_helper.from_array(np.array([batch, 2], np.int64), "fixed_shape"))
        for node in model.graph.node:
            node.input[:] = ["x_fixed" if name == "x" else name for name in node.input]
        model.graph.node.insert(0, onnx.helper.make_node("Reshape", ["x", "fixed_shape"], ["x_fixed"], "pin"))
    path = tmp_path / "fixed.onnx"
    onnx.save(model, path)
    return path


def test_a_fixed_batch_dimension_is_made_symbolic(tmp_path, capsys):
    """Issue 24, item 1: torch's default export ([4, 2]) converts and runs at any batch size; the artifact's
    batch axis is symbolic and the model on disk is not touched."""
    path = _fixed_batch_copy(tmp_path)
    before = path.read_bytes()
    code, _, err = run_cli(capsys, path, "-T", 8, "--pieces", 1, "--calibration", "light", *FAST)
    assert code == 0, err
    artifact = onnx.load(tmp_path / "fixed.snn.onnx")
    for value in (artifact.graph.input[0], artifact.graph.output[0]):
        first = value.type.tensor_type.shape.dim[0]
        assert first.dim_param == "batch" and not first.HasField("dim_value")
    assert path.read_bytes() == before
    np.save(tmp_path / "x.npy", np.zeros((10, 2), np.float32))
    code, _, err = run_cli(capsys, "run", tmp_path / "fixed.snn.onnx", "--input", tmp_path / "x.npy",
                           "-o", tmp_path / "y.npy")
    assert code == 0 and np.load(tmp_path / "y.npy").shape == (10, 1), err


def test_a_batch_size_baked_into_the_graph_says_how_to_re_export(tmp_path, capsys):
    code, _, err = run_cli(capsys, _fixed_batch_copy(tmp_path, reshape=True), *FAST)
    assert code == 1 and "fixed batch size 4" in err and "dynamic_axes" in err, err
    assert len([line for line in err.splitlines() if not line.startswith("[onnx2snn]")]) == 1
    assert not (tmp_path / "fixed.snn.onnx").exists()


def test_a_repeated_domain_is_refused_naming_the_input(model, capsys):
    """Issue 24, item 7a: the second --domain for the same input used to win silently."""
    code, _, err = run_cli(capsys, model, "--domain", "x=-1:1,0:1", "--domain", "x=0:1,0:1", *FAST)
    assert code == 1 and "domain gives input 'x' twice" in err, err
    assert len([line for line in err.splitlines() if not line.startswith("[onnx2snn]")]) == 1
    assert not model.with_name("pinn.snn.onnx").exists()


def test_a_floor_neuron_with_pwl_pieces_is_refused(model, capsys):
    """The PWL expansion builds rounding neurons, so --neuron floor with --pieces auto (or K > 1) changed
    nothing but the artifact's metadata, which then said "floor"; it is refused naming both options."""
    for pieces in ("auto", "3"):
        code, _, err = run_cli(capsys, model, "--neuron", "floor", "--pieces", pieces, *FAST)
        assert code == 1 and "--neuron floor" in err and f"--pieces {pieces}" in err, err
        assert not model.with_name("pinn.snn.onnx").exists()


def test_a_domain_without_a_name(model, tmp_path, capsys):
    """Issue 24, item 7b: ``--domain -1:1,0:1`` was argparse's bare 'expected one argument'; it now names
    the model's only input, and a model with several inputs says the form is NAME=LO:HI."""
    code, _, err = run_cli(capsys, model, "--domain", "-1:1,0:1", "-T", 8, "--pieces", 1, "--calibration", "light",
                           "--report-json", tmp_path / "r.json", *FAST)
    assert code == 0, err
    assert onnx2snn_domain(tmp_path / "pinn.snn.onnx") == "x=-1:1,0:1"
    multi = tmp_path / "multi.onnx"
    shutil.copy(FIXTURES / "torch_multi_io.onnx", multi)
    code, _, err = run_cli(capsys, multi, "--domain", "-1:1", *FAST)
    problems = [line for line in err.splitlines() if not line.startswith("[onnx2snn]")]
    assert code == 1 and "expected NAME=LO:HI" in err and "expected one argument" not in err, err
    assert len(problems) == 1


def onnx2snn_domain(path) -> str:
    return {p.key: p.value for p in onnx.load(path).metadata_props}["onnx2snn.domain"]


def test_an_unknown_calibration_method_is_a_usage_error(model, capsys):
    """Issue 24, item 7c: exit 2 (usage), one line that lists the methods."""
    code, _, err = run_cli(capsys, model, "--calibration", "light+foo", *FAST)
    assert code == 2 and "unknown method(s) 'foo'" in err and "refit" in err, err
    assert len(err.strip().splitlines()) == 1 and not model.with_name("pinn.snn.onnx").exists()


def test_run_refuses_an_output_that_is_not_npy_or_npz(model, tmp_path, capsys):
    """Issue 24, item 7d: ``-o y.csv`` used to get npy bytes."""
    assert run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "light", *FAST)[0] == 0
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    code, _, err = run_cli(capsys, "run", tmp_path / "pinn.snn.onnx", "--input", tmp_path / "x.npy",
                           "-o", tmp_path / "y.csv")
    assert code == 2 and "-o Y.npy or -o Y.npz" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "y.csv").exists()


def test_inspect_describes_an_artifact(model, tmp_path, capsys):
    """Issue 24, item 7e: T, neurons per layer, coding, readout, neuron model and domain of an artifact."""
    assert run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "light", "--neuron", "floor", *FAST)[0] == 0
    code, out, err = run_cli(capsys, "inspect", tmp_path / "pinn.snn.onnx")
    assert code == 0, err
    assert "spiking artifact" in out and "T=8" in out and "coding rate" in out
    assert "readout analog" in out and "neuron floor" in out and "domain: x=-1:1,0:1" in out
    assert "2 spiking layer(s), 32 neurons" in out and "16 units x 1 slot(s) -> 16 signed IF neurons" in out


def test_the_printed_time_is_the_reports_total(model, tmp_path, capsys):
    """Issue 24, item 9: one definition of the conversion time: the JSON's ``timing_s`` has ``validate``
    and ``total`` (= ``convert`` + ``validate``), and the CLI prints that total, saying it includes validation."""
    code, out, err = run_cli(capsys, model, "-T", 8, "--pieces", 1, "--calibration", "light",
                             "--report-json", tmp_path / "r.json", *FAST)
    assert code == 0, err
    timing = json.loads((tmp_path / "r.json").read_text())["timing_s"]
    assert {"convert", "calibrate", "validate", "total"} <= set(timing)
    assert timing["total"] == pytest.approx(timing["convert"] + timing["validate"], abs=0.05)
    assert f"{timing['total']:.1f} s including {timing['validate']:.1f} s validation" in out


@pytest.mark.parametrize("argv", [["--help"], ["convert", "--help"], ["run", "--help"]])
def test_help_loads_no_heavy_module(argv):
    """Issue 24, item 8 (part): ``onnx2snn --help`` took 3.4 s importing onnx, scipy and numba; parsing
    --help now imports none of the heavy modules (numpy is allowed)."""
    import subprocess
    import sys
    from conftest import ROOT
    heavy = ["torch", "onnxruntime", "numba", "scipy", "onnx", "onnx_graphsurgeon", "snntorch"]
    script = (f"import sys, onnx2snn.cli\n"
              f"try:\n    onnx2snn.cli.main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
              f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: onnx2snn" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-300:]
