"""Conversions of the PINN architecture fixtures (issue 25): the default at T = 32 and 128, and the cheap codes.

    OMP_NUM_THREADS=1 python benchmarks/architectures.py --label after
    OMP_NUM_THREADS=1 python benchmarks/architectures.py --label linkedfit --code phase pieces1

Converts each architecture fixture (``tests/fixtures/make_torch_fixtures.py``: residual with linear and
with tanh input projection, modified MLP, LayerNorm, SIREN ω₀ = 30) with the default options and measures,
on 2048 fresh domain points: SNN vs ANN relative L2, spikes per sample, the compute-only energy ratio SNN/ANN
on ``45nm_fp32``, how many of the model's activations spike, and the share of the ANN's MACs that became
synaptic operations.  Rows are appended to ``benchmarks/results/architectures.jsonl`` under ``--label``
(the code version measured); ``benchmarks/results/architectures.md`` shows every label side by side.
A conversion that is refused is recorded with its one-line reason.

``--code`` picks the codes measured (``CODES``): ``default`` (``--pieces auto``, T = 32 and 128), ``phase``
(``--coding phase``, T = 4-10, one curriculum of digits: each T's fit started from the last, as
``calibration.pipeline.calibrate`` does within one conversion) and ``pieces1`` (``--pieces 1``, the rate
code of one neuron per unit fitted end to end, T = 8 and 32).  Rows without a ``code`` are ``default``.
"""

from __future__ import annotations

import argparse
import time

import onnx
import torch

from common import RESULTS, ROOT, append, fmt, load_rows

import onnx2snn  # noqa: E402  (common puts the repository first on the path)
from onnx2snn.errors import Onnx2SnnError  # noqa: E402
from onnx2snn.structure import ACTIVATION_OPS, READOUT_NEURONS  # noqa: E402

FIXTURES = ("torch_residual_linear", "torch_residual_tanh", "torch_modified_mlp", "torch_layernorm", "torch_siren")
TARGETS = {32: 5e-3, 128: 2e-3}        # the default conversion's (issue 25); the cheap codes have none
CODES = {"default": ({}, tuple(TARGETS)), "phase": (dict(coding="phase"), tuple(range(4, 11))),
         "pieces1": (dict(pieces=1), (8, 32))}
ROWS = RESULTS / "architectures.jsonl"
ENERGY_MODEL = "45nm_fp32"


def activations_in(path) -> int:
    """The model's activation nodes (one per layer for these fixtures: Tanh or Sin)."""
    return sum(1 for node in onnx.load(path).graph.node if node.op_type in ACTIVATION_OPS)


def measure(name: str, timesteps: int, label: str, code: str = "default", warm=None) -> tuple[dict, object]:
    """One conversion's row, and its calibration (a warm start for the next digit of the phase code)."""
    path = ROOT / "tests" / "fixtures" / f"{name}.onnx"
    row = {"model": name, "timesteps": timesteps, "label": label, "activations": activations_in(path)}
    if code != "default":
        row["code"] = code
    started = time.perf_counter()
    try:
        result = onnx2snn.convert(path, timesteps=timesteps, validation_points=2048, warm_start=warm,
                                  **CODES[code][0])
    except Onnx2SnnError as e:
        return {**row, "refused": str(e).splitlines()[0].replace(f"{ROOT}/", "")}, None
    report = result.report
    row["seconds"] = round(time.perf_counter() - started, 1)
    spiking = [l for l in report["layers"] if not l["name"].endswith(READOUT_NEURONS)]
    return {**row, "rel_l2_snn_vs_ann": report["validation"]["rel_l2_snn_vs_ann"],
            "spikes_per_sample": report["spikes_per_sample"], "spiking_activations": len(spiking),
            "neurons": sum(l["spiking_neurons"] for l in spiking), "analog_nodes": len(report["analog_nodes"]),
            "spiking_mac_fraction": report["spiking_mac_fraction"],
            "energy_ratio": report["energy"][ENERGY_MODEL]["ratio"]}, result.calibration


def table(rows: list[dict]) -> str:
    latest = {(r["model"], r["timesteps"], r["label"], r.get("code", "default")): r for r in rows}
    versions = list(dict.fromkeys((r["label"], r.get("code", "default")) for r in rows))
    lines = ["| fixture | code | T | SNN vs ANN | spiking activations | analog nodes | neurons | spikes/sample "
             f"| MACs → synops | energy ({ENERGY_MODEL}) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in FIXTURES:
        for label, code in versions:
            column = label if code == "default" else f"{code} ({label})"
            for T in CODES[code][1]:
                r = latest.get((name, T, label, code))
                if r is None:
                    continue
                if "refused" in r:
                    lines.append(f"| {name} | {column} | {T} | refused: {r['refused']} | 0 of {r['activations']} "
                                 "| — | — | — | — | — |")
                    continue
                mark = "" if code != "default" else " ✓" if r["rel_l2_snn_vs_ann"] <= TARGETS[T] else " ✗"
                lines.append(f"| {name} | {column} | {T} | {fmt(r['rel_l2_snn_vs_ann'])}{mark} | "
                             f"{r['spiking_activations']} of {r['activations']} | {r['analog_nodes']} | {r['neurons']} | "
                             f"{r['spikes_per_sample']:.0f} | {100 * r['spiking_mac_fraction']:.0f}% | "
                             f"{r['energy_ratio']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="the code version measured (e.g. before, after)")
    parser.add_argument("--only", nargs="*", default=list(FIXTURES))
    parser.add_argument("--code", nargs="*", default=["default"], choices=list(CODES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.only:
        for code in args.code:
            warm = None
            for T in CODES[code][1]:
                if code == "phase" and warm is not None:       # the digits between, as the curriculum does
                    for between in range(previous + 1, T):
                        warm = measure(name, between, args.label, code, warm)[1]
                row, calibration = measure(name, T, args.label, code, warm)
                warm, previous = (calibration if code == "phase" else None), T
                append(ROWS, row)
                print(row, flush=True)
    text = ["# PINN architectures (issue 25): the default conversion and the cheap codes (issue 22)", "",
            "Written by `benchmarks/architectures.py`; SNN vs ANN relative L2 on 2048 fresh validation points "
            "(✓: within 5e-3 at T=32, 2e-3 at T=128), spiking activations of the model's activation nodes, "
            "nodes left analog, the share of the ANN's MACs that became synaptic operations, and the "
            f"compute-only energy ratio SNN/ANN on {ENERGY_MODEL}.  Labels: `before` = main at 0985dff, "
            "`after` = the linked analysis (issue 25), default conversion.  The cheap codes of issue 22 on the "
            "same fixtures (`--code`): `phase (linkedfit)` = `--coding phase`, `pieces1 (linkedfit)` = "
            "`--pieces 1` (rate code, one neuron per unit, fitted end to end), both fitted through the links "
            "(branch linkedfit); no ✓/✗ there: the accuracy targets are the default conversion's.", "", table(load_rows(ROWS))]
    (RESULTS / "architectures.md").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
