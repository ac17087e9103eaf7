"""NIR hand-off: every shipped model converted at T = 32 and T = 128, exported in both NIR forms and run
in onnx2snn's NIR executor against the artifact's numpy run (``onnx2snn.nir_check``).

    OMP_NUM_THREADS=1 python benchmarks/nir_handoff.py [--fresh] [--points N] [--sinabs-python PATH]

(not ``nir.py``: run as a script, that name would shadow the ``nir`` package it imports.)

Conversions: the default (piecewise-linear, rounding neurons) and ``--preset paper`` (one floor neuron per
unit, v0 = θ/2, spiking readout).  Per row: the exact form's spike mismatches against the artifact stepped
in float64 (the export's precision) and in float32 (the artifact as shipped), its decoded outputs against
both runs, the artifact's own float64-vs-float32 difference; the ON/OFF form's relative L2 against the
artifact under NIR's IF reset to 0 and under a subtractive reset.  Models NIR cannot carry are listed with
the refusal.  Writes ``benchmarks/results/nir.jsonl`` (appended as rows finish) and ``nir.md``.

With a sinabs interpreter (``--sinabs-python PATH`` or ``ONNX2SNN_SINABS_PYTHON``: the python of an
environment with sinabs, which pins an older nir; ``runtimes.nir_sinabs``), the default conversions' ON/OFF
form is also run through sinabs on the same points (``onnx2snn.nir_check.check_sinabs``), rows in
``nir_sinabs.jsonl``.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from common import RESULTS, ROOT, append, load_rows, source_models

import onnx2snn  # noqa: E402
from onnx2snn.errors import ModelError  # noqa: E402
from onnx2snn.nir_check import check_exact, check_onoff, check_sinabs, domain_points  # noqa: E402
from onnx2snn.nir_export import export_nir  # noqa: E402

TIMESTEPS = (32, 128)
CONVERSIONS = {"default": {},                # --preset paper, as the CLI expands it:
               "paper": {"pieces": 1, "threshold": "max", "neuron": "floor", "calibration": "advanced",
                         "readout": "spiking"}}
POINT_SEED = 11                 # the check's points: not the conversion's calibration or validation draws


def row_for(model, conversion: str, T: int, points: int) -> dict:
    import torch
    torch.set_num_threads(1)
    started = time.perf_counter()
    result = onnx2snn.convert(model, timesteps=T, validation_points=512, **CONVERSIONS[conversion])
    artifact = result.model
    row = {"model": model.stem, "conversion": conversion, "timesteps": T,
           "rel_l2_snn_vs_ann": result.report["validation"]["rel_l2_snn_vs_ann"],
           "convert_s": time.perf_counter() - started}
    try:
        exact = export_nir(artifact)
    except ModelError as e:
        return {**row, "refused": str(e)}
    x = domain_points(artifact, points, POINT_SEED)
    started = time.perf_counter()
    f64, f32 = check_exact(exact, artifact, x), check_exact(exact, artifact, x, np.float32)
    row.update(points=points, layers=len(exact.layers), channels=exact.channels, nodes=len(exact.graph.nodes),
               events=f64.events, mismatches_f64=f64.mismatches, mismatches_f32=f32.mismatches,
               exact_rel_l2_f64=f64.rel_l2, exact_rel_l2_f32=f32.rel_l2, exact_rel_l2_shipped=f64.rel_l2_shipped,
               artifact_f64_vs_f32=f64.rel_l2_precision, exact_check_s=time.perf_counter() - started)
    started = time.perf_counter()
    onoff = check_onoff(export_nir(artifact, "onoff"), artifact, x)
    row.update(onoff_rel_l2_value=onoff.rel_l2, onoff_rel_l2_subtract=onoff.rel_l2_subtract,
               onoff_spikes_per_point=onoff.spikes_per_point, artifact_spikes_per_point=f64.events / points,
               onoff_check_s=time.perf_counter() - started)
    return row


def sinabs_row_for(model, conversion: str, T: int, points: int, python: str) -> dict:
    import torch
    torch.set_num_threads(1)
    result = onnx2snn.convert(model, timesteps=T, validation_points=512, **CONVERSIONS[conversion])
    artifact = result.model
    row = {"model": model.stem, "conversion": conversion, "timesteps": T,
           "rel_l2_snn_vs_ann": result.report["validation"]["rel_l2_snn_vs_ann"]}
    try:
        exported = export_nir(artifact, "onoff")
    except ModelError as e:
        return {**row, "refused": str(e)}
    started = time.perf_counter()
    check = check_sinabs(exported, artifact, domain_points(artifact, points, POINT_SEED), python)
    return {**row, "points": points, "sinabs_rel_l2": check.rel_l2, "sinabs_max_abs": check.max_abs,
            "sinabs_multi_rel_l2": check.rel_l2_multi, "sinabs_vs_executor": check.vs_executor,
            "executor_rel_l2": check.executor_rel_l2, "sinabs_spikes_per_point": check.spikes / points,
            "spike_mismatches": check.spike_mismatches, "sinabs_check_s": time.perf_counter() - started}


def sinabs_table(rows: list[dict]) -> list[str]:
    lines = [
        "",
        "## ON/OFF form through sinabs",
        "",
        "`--sinabs-python PATH`: the ON/OFF file read by `sinabs.from_nir` (sinabs 3.1.3, nir 1.0.4, nirtorch 2.0.2, "
        "in an environment of its own; `runtimes/nir_sinabs.py`) and run on the same points as above. sinabs maps IF "
        "to `IAFSqueeze`: subtractive reset, fire at v >= θ, membrane floor -θ, and MultiSpike (trunc(v/θ) spikes per "
        "step) unless its `spike_fn` is set to SingleSpike (one per step, as NIR's IF). Relative L2 of the decoded "
        "outputs against the artifact's run and against onnx2snn's NIR executor (`runtimes/nir_executor.py`) on the "
        "same file: its `sinabs` reading runs sinabs's dynamics in float64 (spike count mismatch: summed per-layer "
        "|difference| against sinabs with SingleSpike); `subtract` and `reset to 0` as in the table above.",
        "",
        "| model | T | sinabs as imported (MultiSpike) vs artifact | sinabs SingleSpike vs artifact | executor: sinabs "
        "reading vs artifact | sinabs vs executor sinabs reading | spike count mismatches | sinabs vs executor "
        "subtractive | sinabs vs executor reset to 0 | spikes/point |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "refused" in r:
            continue
        ours = r["sinabs_vs_executor"]
        lines.append(f"| {r['model']} | {r['timesteps']} | {r['sinabs_multi_rel_l2']:.3g} | {r['sinabs_rel_l2']:.2%} | "
                     f"{r['executor_rel_l2']['sinabs']:.2%} | {ours['sinabs']:.1e} | {r['spike_mismatches']} | "
                     f"{ours['subtract']:.2%} | {ours['value']:.2%} | {r['sinabs_spikes_per_point']:,.0f} |")
    return lines


def table(rows: list[dict], sinabs_rows: list[dict] = ()) -> str:
    done = [r for r in rows if "refused" not in r]
    lines = [
        "# NIR export: exact and ON/OFF forms against the artifact",
        "",
        "`python benchmarks/nir_handoff.py`: every shipped model converted (default = piecewise-linear rounding neurons; "
        "paper = `--preset paper`, one floor neuron per unit with v0 = θ/2 and a spiking readout), exported with "
        "`onnx2snn.export_nir` and run in onnx2snn's NIR executor (`runtimes/nir_executor.py`) on fresh domain "
        "points against the artifact's numpy reference run.",
        "",
        "## Exact form",
        "",
        "Spike mismatches: channel-steps where the export's threshold output differs from the artifact's spike, "
        "against the artifact stepped in float64 (the export's precision) and in float32 (as shipped). Decoded "
        "outputs: relative L2 of the export against the float64 run and against the artifact's ordinary float32 "
        "run, beside the artifact's own float64-vs-float32 difference.",
        "",
        "| model | conversion | T | points | channels | artifact spikes | mismatches f64 | mismatches f32 | "
        "rel L2 vs f64 run | rel L2 vs f32 run | artifact f64 vs f32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in done:
        lines.append(f"| {r['model']} | {r['conversion']} | {r['timesteps']} | {r['points']} | {r['channels']:,} | "
                     f"{r['events']:,} | {r['mismatches_f64']} | {r['mismatches_f32']} | {r['exact_rel_l2_f64']:.1e} | "
                     f"{r['exact_rel_l2_shipped']:.1e} | {r['artifact_f64_vs_f32']:.1e} |")
    lines += [
        "",
        "## ON/OFF form",
        "",
        "Relative L2 of the decoded outputs against the artifact's run, with NIR's IF reset to v_reset = 0 (as the "
        "NIR definition and norse run it) and with a subtractive reset (as sinabs and spyx run IF); spikes per point "
        "of the ON/OFF form (reset to 0) and of the artifact. The SNN-vs-ANN error of the conversion is the scale "
        "these errors add to.",
        "",
        "| model | conversion | T | SNN vs ANN | ON/OFF reset to 0 | ON/OFF subtractive | spikes/point ON/OFF | "
        "spikes/point artifact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in done:
        lines.append(f"| {r['model']} | {r['conversion']} | {r['timesteps']} | {r['rel_l2_snn_vs_ann']:.2e} | "
                     f"{r['onoff_rel_l2_value']:.2%} | {r['onoff_rel_l2_subtract']:.2%} | "
                     f"{r['onoff_spikes_per_point']:,.0f} | {r['artifact_spikes_per_point']:,.0f} |")
    if sinabs_rows:
        lines += sinabs_table(sinabs_rows)
    refused = [r for r in rows if "refused" in r]
    if refused:
        lines += ["", "## Refused", ""]
        lines += [f"* {r['model']} ({r['conversion']}, T={r['timesteps']}): {r['refused']}" for r in refused]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    path = RESULTS / "nir.jsonl"
    if "--fresh" in argv and path.exists():
        path.unlink()
    points = int(argv[argv.index("--points") + 1]) if "--points" in argv else 128
    done = {(r["model"], r["conversion"], r["timesteps"]) for r in load_rows(path)}
    for model in source_models(ROOT / "models"):
        for conversion in CONVERSIONS:
            for T in TIMESTEPS:
                if (model.stem, conversion, T) in done:
                    continue
                row = row_for(model, conversion, T, points)
                append(path, row)
                summary = row.get("refused") or (
                    f"exact: {row['mismatches_f64']} / {row['mismatches_f32']} mismatches (f64 / f32) of "
                    f"{row['events']:,} spikes; onoff {row['onoff_rel_l2_value']:.2%} (reset to 0), "
                    f"{row['onoff_rel_l2_subtract']:.2%} (subtractive)")
                print(f"{model.stem:20s} {conversion:8s} T={T:<4d} {summary}", flush=True)
    sinabs_path = RESULTS / "nir_sinabs.jsonl"
    python = argv[argv.index("--sinabs-python") + 1] if "--sinabs-python" in argv \
        else os.environ.get("ONNX2SNN_SINABS_PYTHON")
    if python:
        if "--fresh" in argv and sinabs_path.exists():
            sinabs_path.unlink()
        run_sinabs_rows(sinabs_path, python, points)
    (RESULTS / "nir.md").write_text(table(load_rows(path), load_rows(sinabs_path)))


def run_sinabs_rows(path, python: str, points: int) -> None:
    done = {(r["model"], r["conversion"], r["timesteps"]) for r in load_rows(path)}
    for model in source_models(ROOT / "models"):
        for T in TIMESTEPS:
            if (model.stem, "default", T) in done:
                continue
            row = sinabs_row_for(model, "default", T, points, python)
            append(path, row)
            summary = row.get("refused") or (
                f"sinabs {row['sinabs_rel_l2']:.2%} (SingleSpike), {row['sinabs_multi_rel_l2']:.3g} (MultiSpike); "
                f"vs executor {row['sinabs_vs_executor']['sinabs']:.1e}, {row['spike_mismatches']} count mismatches")
            print(f"{model.stem:20s} sinabs   T={T:<4d} {summary}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
