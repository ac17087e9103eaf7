"""Conversions of the PINN architecture fixtures (issue 25): the default at T = 32 and 128, and the cheap codes.

    OMP_NUM_THREADS=1 python benchmarks/architectures.py --label after
    OMP_NUM_THREADS=1 python benchmarks/architectures.py --label linkedfit --code phase pieces1
    OMP_NUM_THREADS=1 python benchmarks/architectures.py --label linkedfit --code --target-error 1e-2 5e-3 \
        --only torch_modified_mlp

Converts each architecture fixture (``tests/fixtures/make_torch_fixtures.py``: residual with linear and
with tanh input projection, modified MLP, LayerNorm, SIREN ω₀ = 30; a tanh MLP with reshapes between its
layers, exported by TorchScript and by dynamo, and the same weights without them) with the default options and measures,
on 2048 fresh domain points: SNN vs ANN relative L2, spikes per sample, the compute-only energy ratio SNN/ANN
on ``45nm_fp32``, how many of the model's activations spike, and the share of the ANN's MACs that became
synaptic operations.  Rows are appended to ``benchmarks/results/architectures.jsonl`` under ``--label``
(the code version measured); ``benchmarks/results/architectures.md`` shows every label side by side.
A conversion that is refused is recorded with its one-line reason.

``--code`` picks the codes measured (``CODES``): ``default`` (``--pieces auto``, T = 32 and 128), ``phase``
(``--coding phase``, T = 4-10, one curriculum of digits: each T's fit started from the last, as
``calibration.pipeline.calibrate`` does within one conversion) and ``pieces1`` (``--pieces 1``, the rate
code of one neuron per unit fitted end to end, T = 8 and 32), ``gates-static`` and ``gates-spiking``
(``--gates static`` / ``spiking``: the two variants ``--gates auto``, the default, chooses between, T = 32 and
128).  Rows without a ``code`` are ``default``.
``--target-error E ...`` runs ``onnx2snn MODEL --target-error E`` (``search.py``) on each fixture and
records the conversion it chose, with the search's candidates and time, in a second table.
"""

from __future__ import annotations

import argparse
import time

import onnx
import torch

from common import RESULTS, ROOT, append, fmt, load_rows

import onnx2snn  # noqa: E402  (common puts the repository first on the path)
from onnx2snn.errors import Onnx2SnnError  # noqa: E402
from onnx2snn.search import MARGIN, cheapest_conversion  # noqa: E402
from onnx2snn.structure import ACTIVATION_OPS, READOUT_NEURONS  # noqa: E402

FIXTURES = ("torch_residual_linear", "torch_residual_tanh", "torch_modified_mlp", "torch_layernorm", "torch_siren",
            "torch_reshape", "torch_reshape_dynamo", "torch_reshape_plain")
TARGETS = {32: 5e-3, 128: 2e-3}        # the default conversion's (issue 25); the cheap codes have none
CODES = {"default": ({}, tuple(TARGETS)), "phase": (dict(coding="phase"), tuple(range(4, 11))),
         "pieces1": (dict(pieces=1), (8, 32)),
         "gates-static": (dict(gates="static"), tuple(TARGETS)),
         "gates-spiking": (dict(gates="spiking"), tuple(TARGETS))}
TARGETED = ("default", "gates-static", "gates-spiking")     # the default conversion's accuracy targets apply
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
    if "gates_choice" in report:       # --gates auto chose between the variants (gates.py)
        row["gates"] = report["gates_choice"]["chosen"]
    spiking = [l for l in report["layers"] if not l["name"].endswith(READOUT_NEURONS)]
    return {**row, "rel_l2_snn_vs_ann": report["validation"]["rel_l2_snn_vs_ann"],
            "spikes_per_sample": report["spikes_per_sample"], "spiking_activations": len(spiking),
            "neurons": sum(l["spiking_neurons"] for l in spiking), "analog_nodes": len(report["analog_nodes"]),
            "spiking_mac_fraction": report["spiking_mac_fraction"],
            "energy_ratio": report["energy"][ENERGY_MODEL]["ratio"]}, result.calibration


def search(name: str, target: float, label: str) -> dict:
    """``--target-error``'s choice on one fixture: method, T, analysis, error on fresh points, energy."""
    path = ROOT / "tests" / "fixtures" / f"{name}.onnx"
    row = {"model": name, "label": label, "target_error": target}
    started = time.perf_counter()
    try:
        report = cheapest_conversion(path, target, validation_points=2048).report
    except Onnx2SnnError as e:
        return {**row, "refused": str(e).splitlines()[0].replace(f"{ROOT}/", "")}
    chosen = min((c for c in report["search"] if c["rel_l2_snn_vs_ann"] <= MARGIN * target),
                 key=lambda c: c["energy_ratio"])
    return {**row, "method": chosen["method"], "timesteps": report["timesteps"], "links": chosen.get("links", True),
            "finetune_iterations": chosen.get("finetune_iterations"),
            "rel_l2_snn_vs_ann": report["validation"]["rel_l2_snn_vs_ann"],
            "energy_ratio": report["energy"][ENERGY_MODEL]["ratio"], "candidates": len(report["search"]),
            "seconds": round(time.perf_counter() - started, 1),
            "search": [{k: c[k] for k in ("method", "timesteps", "rel_l2_snn_vs_ann", "energy_ratio", "seconds")}
                       | ({"links": False} if c.get("links") is False else {}) for c in report["search"]]}


def search_table(rows: list[dict]) -> str:
    lines = ["| fixture | label | target | chosen | T | SNN vs ANN (fresh) | energy (45nm_fp32) | candidates | "
             "search time |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['model']} | {r['label']} | {r['target_error']:g} | refused: {r['refused']} "
                         "| — | — | — | — | — |")
            continue
        method = r["method"] + ("" if r["links"] else ", plain chains") + \
            (f", {r['finetune_iterations']} iterations" if r.get("finetune_iterations") else "")
        lines.append(f"| {r['model']} | {r['label']} | {r['target_error']:g} | {method} | {r['timesteps']} | "
                     f"{fmt(r['rel_l2_snn_vs_ann'])} | {r['energy_ratio']:.2f}x | {r['candidates']} | "
                     f"{r['seconds']:.0f} s |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    latest = {(r["model"], r["timesteps"], r["label"], r.get("code", "default")): r for r in rows}
    versions = list(dict.fromkeys((r["label"], r.get("code", "default")) for r in rows))
    lines = ["| fixture | code | T | SNN vs ANN | spiking activations | analog nodes | neurons | spikes/sample "
             f"| MACs → synops | energy ({ENERGY_MODEL}) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in FIXTURES:
        for label, code in versions:
            column = label if code == "default" else f"{code} ({label})"
            found = [(T, latest[name, T, label, code]) for T in CODES[code][1] if (name, T, label, code) in latest]
            chosen = {r["gates"] for _, r in found if "gates" in r}
            column += f" (gates {', '.join(sorted(chosen))} chosen)" if chosen else ""
            refused = [T for T, r in found if "refused" in r]
            if refused:         # one line for every T refused
                r = latest[name, refused[0], label, code]
                lines.append(f"| {name} | {column} | {', '.join(map(str, refused))} | refused: {r['refused']} | "
                             f"0 of {r['activations']} | — | — | — | — | — |")
            for T, r in found:
                if "refused" in r:
                    continue
                mark = "" if code not in TARGETED else " ✓" if r["rel_l2_snn_vs_ann"] <= TARGETS[T] else " ✗"
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
    parser.add_argument("--target-error", nargs="*", type=float, default=[])
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
        for target in args.target_error:
            row = search(name, target, args.label)
            append(ROWS, row)
            print(row, flush=True)
    text = ["# PINN architectures (issue 25): the default conversion and the cheap codes (issue 22)", "",
            "Written by `benchmarks/architectures.py`; SNN vs ANN relative L2 on 2048 fresh validation points "
            "(✓: within 5e-3 at T=32, 2e-3 at T=128), spiking activations of the model's activation nodes, "
            "nodes left analog, the share of the ANN's MACs that became synaptic operations, and the "
            f"compute-only energy ratio SNN/ANN on {ENERGY_MODEL}.  Labels: `before` = main at 0985dff, "
            "`after` = main at ab224d5 (static oscillating layers computed once per point), `knots` = branch "
            "siren (knots priced by spikes on static layers read only by readouts; the budget's error model measured "
            "with 4 pieces per monotone stretch), `range` = branch sinrange (a static sine over several periods "
            "range-reduced once per point, `onnx2snn/sine_range.py`), `reshape` = branch reshape (Reshape, Flatten, "
            "Squeeze, Unsqueeze, Transpose that keep each point's values in its row are link ops), `main-5292a24` = "
            "main before it.  The cheap codes of issue 22 on the "
            "same fixtures (`--code`): `phase` = `--coding phase`, `pieces1` = `--pieces 1` (rate code, one neuron "
            "per unit, fitted end to end); `(main-97099a0)`: on the plain-chain analysis, as main at 97099a0 "
            "fitted them (every node off the chains analog), `(linkedfit)`: fitted through the links (now "
            "the default for these codes); no ✓/✗ there: the accuracy targets are the default conversion's.  "
            "Label `gates` = branch gates: `--gates auto` is the default (both variants of a model with static "
            "gates converted, the one meeting the accuracy on selection points at least energy kept, `gates.py`; "
            "the column says which was chosen), `gates-static` / `gates-spiking` = `--gates static` (the modified "
            "MLP's gates U, V computed once per point) / `--gates spiking` (every activation spikes; the budget "
            "prices units at the graph outputs through the analog tail, `budget.tail_sensitivities`).", "",
            table([r for r in load_rows(ROWS) if "target_error" not in r]), "",
            "## `--target-error`: the cheapest conversion found", "",
            "`onnx2snn MODEL --target-error E` (`search.py`): the conversion chosen (the least energy whose error "
            "on the search's selection points is within 0.9·E), its error on 2048 fresh points and energy, the "
            "number of candidates converted and the search's time (one CPU thread, a shared machine).", "",
            search_table([r for r in load_rows(ROWS) if "target_error" in r])]
    (RESULTS / "architectures.md").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
