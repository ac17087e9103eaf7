"""The paper's table side by side with ours, per shipped PINN: the papers' pipeline (``--preset paper``) and
our default conversion at T = 32 and 128, against the exact solution and the ANN, with spike rates next to
the paper's, synaptic operations, the energy estimate, conversion time, and the DCT low-pass of the
output on a regular grid (error vs exact before and after).  Training time of plain vs separable PINNs
is measured by ``training_time.py`` (it needs torch and the training code of ``models/``).

    OMP_NUM_THREADS=1 python benchmarks/paper.py [--fresh] [MODEL.onnx ...]

Writes ``benchmarks/results/paper.jsonl`` (a row per conversion, appended as they finish; rows already
there are skipped unless --fresh) and ``benchmarks/results/paper.md``.  Errors are relative L2 on 2048
validation points not used for calibration (about 2048 grid points in all for separable models); the
low-pass columns use a regular grid of about 4096 points, cut-off chosen against the ANN on that grid.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnx

from common import RESULTS, ROOT, append, fmt, load_rows

import onnx2snn  # noqa: E402
from onnx2snn.ann import run_ann  # noqa: E402
from onnx2snn.exact import exact_solution  # noqa: E402
from onnx2snn.importer import import_model  # noqa: E402
from onnx2snn.inputs import is_grid_model  # noqa: E402
from onnx2snn.lowpass import choose_cutoff, lowpass  # noqa: E402
from onnx2snn.report import META_PROBLEM  # noqa: E402

# problem → (shipped model, the paper's spike rate) in DESIGN §6's order
PROBLEMS = {
    "Poisson 1-D": ("poisson1d.onnx", 0.37),
    "diffusion-reaction": ("diffusion_reaction.onnx", 0.29),
    "wave": ("wave.onnx", 0.57),
    "Burgers": ("burgers.onnx", 0.73),
    "Burgers, separable": ("spinn_burgers.onnx", 0.28),
    "Beltrami, separable": ("spinn_beltrami.onnx", 0.18),
}
METHODS = {"paper preset": dict(preset="paper"), "ours (default)": {}}
PRESET = dict(pieces=1, calibration="advanced", threshold="max", neuron="floor", readout="spiking")
GRID_POINTS = 4096


def main() -> None:
    path = RESULTS / "paper.jsonl"
    if "--fresh" in sys.argv and path.exists():
        path.unlink()
    chosen = {Path(a).name for a in sys.argv[1:] if a.endswith(".onnx")}
    done = {(r["problem"], r["method"], r["timesteps"]) for r in load_rows(path)}
    for problem, (file, _) in PROBLEMS.items():
        model = ROOT / "models" / file
        if not model.exists() or (chosen and file not in chosen):
            continue
        for label, options in METHODS.items():
            for T in (32, 128):
                if (problem, label, T) in done:
                    continue
                row = run_row(model, problem, label, T, PRESET if options else {})
                append(path, row)
                print(f"{problem:22s} {label:15s} T={T:<4d} vs exact {fmt(row['rel_l2_snn_vs_exact'])} "
                      f"vs ANN {fmt(row['rel_l2_snn_vs_ann'])} rate {row['spike_rate']:.3f} "
                      f"low-pass {fmt(row['grid_before'])} -> {fmt(row['grid_after'])} "
                      f"({row['convert_s']:.0f} s)", flush=True)
    write_markdown(load_rows(path))


def run_row(model: Path, problem: str, label: str, timesteps: int, options: dict) -> dict:
    started = time.perf_counter()
    result = onnx2snn.convert(model, timesteps=timesteps, **options)
    convert_s = time.perf_counter() - started
    report, v = result.report, result.report["validation"]
    ann_model = onnx.load(model)
    parameters = sum(int(np.prod(t.dims)) for t in ann_model.graph.initializer)
    before, after, fraction = grid_lowpass(model, result)
    return {
        "problem": problem, "model": model.stem, "method": label, "timesteps": timesteps,
        "parameters": parameters, "rel_l2_ann_vs_exact": v.get("rel_l2_ann_vs_exact"),
        "rel_l2_snn_vs_exact": v.get("rel_l2_snn_vs_exact"), "rel_l2_snn_vs_ann": v["rel_l2_snn_vs_ann"],
        "spike_rate": report["spike_rate"], "spikes_per_sample": report["spikes_per_sample"],
        "synops_per_sample": report["synops_per_sample"], "ann_macs_per_sample": report["ann_macs_per_sample"],
        "energy_snn_45nm_pj": report["energy_pj_per_sample"]["snn_45nm"],
        "energy_ann_45nm_pj": report["energy_pj_per_sample"]["ann_45nm"],
        "convert_s": convert_s, "grid_before": before, "grid_after": after, "grid_kept_fraction": fraction,
    }


def grid_lowpass(model: Path, result) -> tuple[float | None, float | None, float | None]:
    """SNN vs exact on a regular grid of the domain, before and after the DCT low-pass (cut-off chosen
    against the ANN on the same grid)."""
    imported = import_model(model)
    problem = imported.metadata.get(META_PROBLEM, "").removesuffix("_separable")
    boxes = {name: result.domain[name] for name in imported.input_shapes}
    axes_count = sum(len(b) for b in boxes.values())
    n = max(2, int(round(GRID_POINTS ** (1.0 / axes_count))))
    lines = [np.linspace(lo, hi, n) for b in boxes.values() for lo, hi in b]
    grid = np.stack([a.ravel() for a in np.meshgrid(*lines, indexing="ij")], axis=1)
    if is_grid_model(imported):       # one input per axis: the model forms the grid itself
        feeds = {name: line[:, None].astype(imported.dtype) for name, line in zip(boxes, lines)}
    else:
        feeds = {next(iter(boxes)): grid.astype(imported.dtype)}
    try:
        exact = exact_solution(problem, grid)
    except ValueError:
        return None, None, None
    names = [o.name for o in imported.model.graph.output]
    shape = (n,) * axes_count
    snn = result.network().run(feeds)
    ann = run_ann(imported.model, feeds)
    fields = lambda out: np.stack([np.asarray(out[k]).reshape(shape + (-1,)) for k in names], -1).reshape(shape + (-1,))
    y_snn, y_ann, y_exact = fields(snn), fields(ann), exact.reshape(shape + (-1,))
    grid_axes = tuple(range(axes_count))
    fraction = choose_cutoff(y_snn, y_ann, grid_axes)
    relative = lambda y: float(np.linalg.norm(y - y_exact) / np.linalg.norm(y_exact))
    return relative(y_snn), relative(lowpass(y_snn, fraction, grid_axes)), fraction


def write_markdown(rows: list[dict]) -> None:
    key = {(r["problem"], r["method"], r["timesteps"]): r for r in rows}
    head = ("| problem | params | ANN vs exact | method | T | SNN vs exact | SNN vs ANN | spike rate (paper) | "
            "spikes/sample | SOPs/sample | energy SNN / ANN (nJ) | low-pass vs exact | convert (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for problem, (_, paper_rate) in PROBLEMS.items():
        for method in METHODS:
            for T in (32, 128):
                r = key.get((problem, method, T))
                if r is None:
                    continue
                lines.append(
                    f"| {problem} | {r['parameters']} | {fmt(r['rel_l2_ann_vs_exact'])} | {method} | {T} | "
                    f"{fmt(r['rel_l2_snn_vs_exact'])} | {fmt(r['rel_l2_snn_vs_ann'])} | "
                    f"{r['spike_rate']:.2f} ({paper_rate}) | {fmt(r['spikes_per_sample'])} | "
                    f"{fmt(r['synops_per_sample'])} | {r['energy_snn_45nm_pj'] / 1e3:.3g} / "
                    f"{r['energy_ann_45nm_pj'] / 1e3:.3g} | {fmt(r['grid_before'])} → {fmt(r['grid_after'])} | "
                    f"{r['convert_s']:.0f} |")
    text = ["# The paper's table, reproduced side by side with ours", "",
            "Written by `benchmarks/paper.py`.  *paper preset* = `--preset paper` (one signed floor neuron per "
            "unit, θ± = max/min, advanced calibration, spiking readout enlarged 1.5×); *ours* = no options "
            "(piecewise-linear expansion, adaptive pieces, refit).  Relative L2 on 2048 fresh validation points "
            "(separable models: a grid of about 2048 points).  Spike rate = spikes / (neurons × T × samples), "
            "with the paper's value in brackets.  Energy is a compute-only model (SOPs × 0.9 pJ vs MACs × "
            "4.6 pJ, 45 nm).  Low-pass: SNN vs exact on a regular grid of about 4096 points before → after "
            "the DCT low-pass (`onnx2snn run --lowpass dct`, cut-off chosen against the ANN).  Conversion "
            "time includes calibration and validation, one thread, on a shared 2-core machine.", "",
            *lines, ""]
    (RESULTS / "paper.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
