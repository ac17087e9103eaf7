"""`onnx2snn evaluate` and the readable report: errors against onnxruntime and the exact solution, spike
counts against the runtime's totals, the plotted field against the ANN, the files of `--report`."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

import runtimes
from conftest import FIXTURES, MODELS
from onnx2snn import convert
from onnx2snn.cli import main
from onnx2snn.evaluate import evaluate
from onnx2snn.field import field
from onnx2snn.report import relative_l2

FAST = dict(samples=512, validation_points=256)


def converted(tmp_path, name: str, directory=FIXTURES, **options):
    source = tmp_path / f"{name}.onnx"
    shutil.copy(directory / f"{name}.onnx", source)
    result = convert(source, **{**FAST, **options})
    artifact = result.save(tmp_path / f"{name}.snn.onnx")
    return source, artifact, result


def ann_outputs(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_evaluate_measures_errors_spikes_and_energy_against_independent_runs(tmp_path):
    source, artifact, result = converted(tmp_path, "torch_tanh_gemm", timesteps=16, pieces=1,
                                         calibration="light")
    x = np.random.default_rng(5).uniform([-1, 0], [1, 1], (300, 2)).astype(np.float32)
    evaluation = evaluate(artifact, timesteps=[16, 4, 64], inputs=x)
    report = evaluation.report
    assert [row["timesteps"] for row in report["sweep"]] == [16, 4, 64] and report["timesteps"] == 16
    for row in report["sweep"]:
        snn = result.network().run(x, timesteps=row["timesteps"])
        y_snn = next(iter(snn.values()))
        assert row["rel_l2_snn_vs_ann"] == pytest.approx(relative_l2(y_snn, ann_outputs(source, {"x": x})[0]),
                                                         rel=1e-9)
    errors = {row["timesteps"]: row["rel_l2_snn_vs_ann"] for row in report["sweep"]}
    assert errors[64] < errors[4]            # one neuron per unit: the rate code's error falls with T
    spikes = {row["timesteps"]: row["spikes_per_sample"] for row in report["sweep"]}
    assert spikes[4] < spikes[16] < spikes[64]
    # the convert report's measurement on the same points is the evaluation's at the artifact's T
    again = evaluate(artifact, inputs=result.report and x).report
    assert again["energy"] == report["energy"] and again["layers"] == report["layers"]
    # per-neuron counts (unfused reference) add up to the fused runtime's per-layer totals
    run = result.network().run_with_stats(x[:256])
    for layer, counts in report["neuron_spikes"].items():
        assert len(counts) == run.spikes[layer].neurons
        assert sum(counts) * 256 == pytest.approx(run.spikes[layer].events, rel=1e-4)    # 4 significant digits


def test_evaluate_finds_the_exact_solution_and_the_ann_beside_the_artifact(tmp_path):
    source, artifact, result = converted(tmp_path, "poisson1d", MODELS, timesteps=8)
    report = evaluate(artifact, points=512).report
    v = report["validation"]
    assert v["rel_l2_ann_vs_exact"] < 1e-3 < v["rel_l2_snn_vs_exact"]
    assert abs(v["rel_l2_snn_vs_exact"] - v["rel_l2_snn_vs_ann"]) <= v["rel_l2_ann_vs_exact"] * 1.01
    source.unlink()
    with pytest.raises(Exception, match="give --ann"):
        evaluate(artifact)


def test_field_is_the_ann_on_a_regular_grid(tmp_path):
    source, artifact, _ = converted(tmp_path, "torch_tanh_gemm", timesteps=8, pieces=1, calibration="light")
    evaluation = evaluate(artifact, points=64)
    shown = field(evaluation.imported, evaluation.network, evaluation.domain)
    (xn, xs), (tn, ts) = shown.axes
    assert shown.ann.shape == shown.snn.shape == (len(xs), len(ts)) and xs[0] == -1 and ts[-1] == 1
    grid = np.stack(np.meshgrid(xs, ts, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    expected = ann_outputs(source, {"x": grid})[0][:, 0].reshape(len(xs), len(ts))
    np.testing.assert_allclose(shown.ann, expected, rtol=1e-6, atol=1e-7)
    other = runtimes.load(artifact, backend="onnxruntime").run({"x": grid})["u"][:, 0].reshape(len(xs), len(ts))
    assert relative_l2(shown.snn, other) < 1e-4           # the artifact in another runtime, same grid


@pytest.mark.parametrize("name", ["torch_separable", "torch_multi_io"])
def test_field_of_separable_and_multi_input_networks(tmp_path, name):
    source, artifact, _ = converted(tmp_path, name, timesteps=8)
    evaluation = evaluate(artifact, points=256)
    shown = field(evaluation.imported, evaluation.network, evaluation.domain)
    assert [n for n, _ in shown.axes] == ["x", "t"] and shown.ann.shape == (64, 64)
    assert relative_l2(shown.snn, shown.ann) < 0.1
    report = evaluation.report           # per-neuron counts on the same points add up to each layer's
    for layer in report["layers"]:
        assert sum(report["neuron_spikes"][layer["name"]]) == pytest.approx(layer["spikes_per_sample"], rel=1e-3)


def test_cli_evaluate_and_report_files(tmp_path, capsys):
    source, artifact, _ = converted(tmp_path, "poisson1d", MODELS, timesteps=8, pieces=1, calibration="light")
    code = main(["evaluate", str(artifact), "-T", "8,32", "--points", "256", "--report-json", str(tmp_path / "e.json"),
                 "--report", str(tmp_path / "doc"), "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    assert f"{report['sweep'][1]['rel_l2_snn_vs_ann']:.3e}" in out and "compute only" in out
    saved = json.loads((tmp_path / "doc" / "report.json").read_text())
    assert saved["sweep"] == report["sweep"]
    curve = saved["figures"]["field"]
    assert len(curve["axes"]) == 1 and len(curve["ann"]) == 512 and curve["exact"] is not None
    np.testing.assert_allclose(curve["ann"], curve["exact"], atol=5e-3)    # the trained PINN vs sin(πx)
    for name in ("field.png", "timesteps.png", "spikes.png", "energy.png"):
        assert (tmp_path / "doc" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "doc" / "report.md").read_text()
    assert "![SNN and ANN over the domain](field.png)" in markdown
    assert f"{report['validation']['rel_l2_snn_vs_ann']:.3e}" in markdown
    assert "compute only" in markdown


def test_cli_convert_writes_the_report_beside_the_artifact(tmp_path, capsys):
    source = tmp_path / "pinn.onnx"
    shutil.copy(FIXTURES / "torch_tanh_gemm.onnx", source)
    code = main([str(source), "-T", "8", "--samples", "512", "--validation-points", "256", "--report", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    saved = json.loads((tmp_path / "pinn.snn.report" / "report.json").read_text())
    assert [row["timesteps"] for row in saved["sweep"]] == [8, 16, 32, 64, 128]
    assert "report.md" in out


def test_cli_evaluate_refuses_what_it_cannot_measure(tmp_path, capsys):
    source, artifact, _ = converted(tmp_path, "torch_tanh_gemm", timesteps=8, pieces=1, calibration="light")
    other = tmp_path / "other.onnx"
    shutil.copy(FIXTURES / "torch_multi_io.onnx", other)
    for argv, message in [(["evaluate", str(artifact), "--ann", str(other)], "not the network it was converted from"),
                          (["evaluate", str(source)], "not a spiking artifact"),
                          (["evaluate", str(artifact), "--ann", str(tmp_path / "none.onnx")], "no such file")]:
        code = main(argv + ["-q"])
        err = capsys.readouterr().err
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "file").write_text("x")
    assert main(["evaluate", str(artifact), "--report", str(tmp_path / "file")]) == 2


def test_progress_bars_on_a_terminal_only(monkeypatch, capsys):
    from onnx2snn import cli
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    bar = cli.Progress()
    for done in range(1, 11):
        bar("finetune: quantised fit", done, 10, f"best loss {1.0 / done:.3e}")
    bar("validating")
    err = capsys.readouterr().err
    assert "finetune: quantised fit" in err and "best loss" in err and "[onnx2snn] validating" in err
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    quiet = cli.Progress()
    quiet("finetune: quantised fit", 1, 10)
    assert capsys.readouterr().err == ""


def test_cli_run_reports_its_own_error_spikes_and_energy(tmp_path, capsys):
    source, artifact, _ = converted(tmp_path, "torch_tanh_gemm", timesteps=8, pieces=1, calibration="light")
    x = np.random.default_rng(3).uniform([-1, 0], [1, 1], (200, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = main(["run", str(artifact), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--ann", str(source), "--report-json", str(tmp_path / "run.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((tmp_path / "run.json").read_text())
    error = relative_l2(np.load(tmp_path / "y.npy"), ann_outputs(source, {"x": x})[0])
    assert report["validation"]["rel_l2_snn_vs_ann"] == pytest.approx(error, rel=1e-9)
    assert f"{error:.3e}" in out and report["validation"]["points"] == 200
    assert report["energy"]["45nm_fp32"]["ratio"] > 0 and report["spikes_per_sample"] > 0
