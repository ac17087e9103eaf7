"""Default conversion of the PINN architecture fixtures (issue 25) at T = 32 and 128.

    OMP_NUM_THREADS=1 python benchmarks/architectures.py --label after

Converts each architecture fixture (``tests/fixtures/make_torch_fixtures.py``: residual with linear and
with tanh input projection, modified MLP, LayerNorm, SIREN ω₀ = 30) with the default options and measures,
on 2048 fresh domain points: SNN vs ANN relative L2, spikes per sample, the compute-only energy ratio SNN/ANN
on ``45nm_fp32``, how many of the model's activations spike, and the share of the ANN's MACs that became
synaptic operations.  Rows are appended to ``benchmarks/results/architectures.jsonl`` under ``--label``
(the code version measured); ``benchmarks/results/architectures.md`` shows every label side by side.
A conversion that is refused is recorded with its one-line reason.
"""

from __future__ import annotations

import argparse

import onnx

from common import RESULTS, ROOT, append, fmt, load_rows

import onnx2snn  # noqa: E402  (common puts the repository first on the path)
from onnx2snn.errors import Onnx2SnnError  # noqa: E402
from onnx2snn.structure import ACTIVATION_OPS, READOUT_NEURONS  # noqa: E402

FIXTURES = ("torch_residual_linear", "torch_residual_tanh", "torch_modified_mlp", "torch_layernorm", "torch_siren")
TARGETS = {32: 5e-3, 128: 2e-3}
ROWS = RESULTS / "architectures.jsonl"
ENERGY_MODEL = "45nm_fp32"


def activations_in(path) -> int:
    """The model's activation nodes (one per layer for these fixtures: Tanh or Sin)."""
    return sum(1 for node in onnx.load(path).graph.node if node.op_type in ACTIVATION_OPS)


def measure(name: str, timesteps: int, label: str) -> dict:
    path = ROOT / "tests" / "fixtures" / f"{name}.onnx"
    row = {"model": name, "timesteps": timesteps, "label": label, "activations": activations_in(path)}
    try:
        report = onnx2snn.convert(path, timesteps=timesteps, validation_points=2048).report
    except Onnx2SnnError as e:
        return {**row, "refused": str(e).splitlines()[0].replace(f"{ROOT}/", "")}
    spiking = [l for l in report["layers"] if not l["name"].endswith(READOUT_NEURONS)]
    return {**row, "rel_l2_snn_vs_ann": report["validation"]["rel_l2_snn_vs_ann"],
            "spikes_per_sample": report["spikes_per_sample"], "spiking_activations": len(spiking),
            "neurons": sum(l["spiking_neurons"] for l in spiking), "analog_nodes": len(report["analog_nodes"]),
            "spiking_mac_fraction": report["spiking_mac_fraction"],
            "energy_ratio": report["energy"][ENERGY_MODEL]["ratio"]}


def table(rows: list[dict]) -> str:
    latest = {(r["model"], r["timesteps"], r["label"]): r for r in rows}
    labels = list(dict.fromkeys(r["label"] for r in rows))
    lines = ["| fixture | code | T | SNN vs ANN | spiking activations | analog nodes | neurons | spikes/sample "
             f"| MACs → synops | energy ({ENERGY_MODEL}) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in FIXTURES:
        for label in labels:
            for T, target in TARGETS.items():
                r = latest.get((name, T, label))
                if r is None:
                    continue
                if "refused" in r:
                    lines.append(f"| {name} | {label} | {T} | refused: {r['refused']} | 0 of {r['activations']} "
                                 "| — | — | — | — | — |")
                    continue
                mark = "✓" if r["rel_l2_snn_vs_ann"] <= target else "✗"
                lines.append(f"| {name} | {label} | {T} | {fmt(r['rel_l2_snn_vs_ann'])} {mark} | "
                             f"{r['spiking_activations']} of {r['activations']} | {r['analog_nodes']} | {r['neurons']} | "
                             f"{r['spikes_per_sample']:.0f} | {100 * r['spiking_mac_fraction']:.0f}% | "
                             f"{r['energy_ratio']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="the code version measured (e.g. before, after)")
    parser.add_argument("--only", nargs="*", default=list(FIXTURES))
    args = parser.parse_args()
    for name in args.only:
        for T in TARGETS:
            row = measure(name, T, args.label)
            append(ROWS, row)
            print(row, flush=True)
    write_markdown()


def write_markdown() -> None:
    text = ["# PINN architectures, default conversion (issue 25)", "",
            "Written by `benchmarks/architectures.py`; SNN vs ANN relative L2 on 2048 fresh validation points "
            "(✓: within 5e-3 at T=32, 2e-3 at T=128), spiking activations of the model's activation nodes, "
            "nodes left analog, the share of the ANN's MACs that became synaptic operations, and the "
            f"compute-only energy ratio SNN/ANN on {ENERGY_MODEL}.  Labels: `before` = main at 0985dff, "
            "`after` = main at ab224d5 (static oscillating layers computed once per point), `knots` = branch "
            "siren (knots priced by spikes on static layers read only by readouts; the budget's error model measured "
            "with 4 pieces per monotone stretch), `range` = branch sinrange (a static sine over several periods "
            "range-reduced once per point, `onnx2snn/sine_range.py`).", "", table(load_rows(ROWS))]
    (RESULTS / "architectures.md").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
