"""Streaming sigma-delta networks (``--coding delta``): energy per point against grid size, visiting order
and event size, per shipped model, with the delta-ANN baseline.

    OMP_NUM_THREADS=1 python benchmarks/stream.py [--fresh | --agreement] [--plot-only] [MODEL ...]

Per model (``MODELS``) and target error E (``TARGETS``: the converter chooses the event sizes θ per layer
for E on ordered calibration grids, ``onnx2snn.delta.thresholds``), the artifact streams fresh grids of
cell midpoints (``GRID_POINTS``: 10^3 to 10^6 points; a separable network's axes of ⌈N^(1/2)⌉ values each)
in each order (``ORDERS``).  Each row: relative L2 vs the ANN over the whole grid, the energy ratio
SNN / ANN on 45 nm fp32 (compute only, same table, start-up included: the first point sends every unit's
value from r(0)), the delta ANN's ratio (the same change-only trick with multiply-accumulates: what
ordering buys any hardware), spikes and synaptic operations per point, the first point's spikes, and the
single-threaded wall time of the stream.  ``agreement`` rows: the snnTorch runtime against the numpy
reference on 10^4 points (events that differ, of all, and the largest output difference).

Writes ``benchmarks/results/stream.jsonl`` (rows appended as they finish; rows already there skipped
unless ``--fresh``; ``--agreement``: only the agreement rows, re-run), ``stream.md`` and ``stream.png``.
"""

from __future__ import annotations

import json
import sys
import time

from common import RESULTS, ROOT, append, fmt, load_rows

import numpy as np
import torch

import onnx2snn
from onnx2snn.delta.convert import grid_points
from onnx2snn.delta.stream import stream, stream_report
from onnx2snn.importer import import_model
from onnx2snn.structure import analyse
from runtimes.network import SpikingNetwork

torch.set_num_threads(1)
MODELS = ("poisson1d", "burgers", "diffusion_reaction", "wave", "spinn_burgers")
TARGETS = (1e-2, 3e-3, 1e-3)
GRID_POINTS = (10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6)
ORDERS = ("boustrophedon", "hilbert", "random")
AGREEMENT_POINTS = 10 ** 4
JSONL, MARKDOWN, PLOT = RESULTS / "stream.jsonl", RESULTS / "stream.md", RESULTS / "stream.png"


def rows_for(model: str, done: set) -> None:
    path = ROOT / "models" / f"{model}.onnx"
    imported = import_model(path)
    structure = analyse(imported.model)
    for target in TARGETS:
        started = time.perf_counter()
        result = onnx2snn.convert(path, coding="delta", target_error=target)
        convert_s = time.perf_counter() - started
        network = SpikingNetwork(result.model, source=model)
        theta = [round(t["theta"], 6) for t in result.report["thresholds"]]
        for points in GRID_POINTS:
            grid = grid_points(imported, result.domain, points, midpoints=True)
            for order in ORDERS:
                key = (model, target, points, order)
                if key in done:
                    continue
                started = time.perf_counter()
                streamed = stream(network, grid, order)
                seconds = time.perf_counter() - started
                report = stream_report(imported, structure, network, grid, order, streamed=streamed)
                append(JSONL, {"kind": "stream", "model": model, "target": target, "points": points,
                               "grid": [a.shape[0] for a in grid.values()] if len(grid) > 1 else
                               [next(iter(grid.values())).shape[0]], "order": order, "theta": theta,
                               "allocation": result.report["threshold_allocation"],
                               "rel_l2_snn_vs_ann": report["validation"]["rel_l2_snn_vs_ann"],
                               "samples": report["validation"]["points"],
                               "energy_ratio": report["energy"]["45nm_fp32"]["ratio"],
                               "delta_ann_ratio": report["delta_ann"]["energy"]["45nm_fp32"]["ratio"],
                               "energy_ratio_loihi": report["energy"]["loihi"]["ratio"],
                               "spikes_per_point": report["spikes_per_sample"],
                               "synops_per_point": report["synops_per_sample"],
                               "first_point_spikes": report["startup"]["spikes_first_point"],
                               "stream_s": seconds, "convert_s": convert_s})
        if target == 3e-3 and (model, "agreement") not in done:
            append(JSONL, agreement(model, network, imported, result.domain))


def agreement(model: str, network: SpikingNetwork, imported, box) -> dict:
    """snnTorch against numpy on ``AGREEMENT_POINTS`` boustrophedon points: events that differ (Σ over
    layers and points of |Δ count|) and the largest output difference."""
    grid = grid_points(imported, box, AGREEMENT_POINTS, midpoints=True)
    started, started_cpu = time.perf_counter(), time.process_time()
    reference = stream(network, grid, "boustrophedon")
    numpy_s, numpy_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    torch_net = SpikingNetwork(network.model, backend="snntorch", source=model)
    started, started_cpu = time.perf_counter(), time.process_time()
    got = stream(torch_net, grid, "boustrophedon")
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    counts = reference.run.spikes
    differ = sum(int(np.abs(got.run.spikes[k].per_row - c.per_row).sum()) for k, c in counts.items())
    rows = sum(int(np.any(got.run.spikes[k].per_row != c.per_row)) for k, c in counts.items())
    output = max(float(np.max(np.abs(got.outputs[k].astype(np.float64) - y))) for k, y in reference.outputs.items())
    return {"kind": "agreement", "model": model, "points": AGREEMENT_POINTS, "differing_events": differ,
            "events": sum(c.events for c in counts.values()), "layers_differing": rows,
            "max_output_difference": output, "numpy_s": numpy_s, "snntorch_s": seconds,
            "numpy_cpu_s": numpy_cpu_s, "snntorch_cpu_s": cpu_s,
            "arithmetic": "stream_math float64"}


def agreement_row(model: str) -> None:
    """Only the agreement row of ``model`` (E = 3e-3), appended."""
    path = ROOT / "models" / f"{model}.onnx"
    imported = import_model(path)
    result = onnx2snn.convert(path, coding="delta", target_error=3e-3)
    append(JSONL, agreement(model, SpikingNetwork(result.model, source=model), imported, result.domain))


def write_markdown(rows: list[dict]) -> None:
    streams = [r for r in rows if r["kind"] == "stream"]
    models = [m for m in MODELS if any(r["model"] == m for r in streams)]
    lines = ["# Streaming sigma-delta networks: energy per point against grid size, order and event size", "",
             "`benchmarks/stream.py`: each shipped model converted with `--coding delta --target-error E` "
             "(event sizes θ per layer chosen on ordered calibration grids of 2^16 points), then fresh grids "
             "of cell midpoints streamed through it in each order, one point per step, state carried. "
             "Error: relative L2 vs the ANN over the whole grid. Energy: 45 nm fp32, compute only, same "
             "cost table for both sides, start-up included (the first point sends every unit's value). "
             "Delta ANN: the same change-only trick on a CPU (units whose value moved by θ/2 send their "
             "change, each target multiply-accumulates it), so `delta ANN` is what the ordering buys any "
             "hardware and `SNN / delta ANN` what binary events add. Separable networks (spinn_burgers) "
             "stream each axis (⌈√N⌉ values) and pay the per-grid-point combination as the ANN does.", ""]
    lines += summary(streams)
    for model in models:
        lines += ["", f"## {model}", "",
                  "| E | θ per layer | points | order | rel L2 vs ANN | SNN / ANN | delta ANN / ANN | spikes/pt "
                  "| synops/pt | first-point spikes | stream s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted((r for r in streams if r["model"] == model),
                        key=lambda r: (-r["target"], r["points"], ORDERS.index(r["order"]))):
            grid = "x".join(map(str, r["grid"])) if len(r["grid"]) > 1 else f"{r['points']:,}"
            lines.append(f"| {r['target']:g} | {', '.join(f'{t:.2g}' for t in r['theta'])} | {grid} | {r['order']} "
                         f"| {fmt(r['rel_l2_snn_vs_ann'])} | {r['energy_ratio']:.3g} | {r['delta_ann_ratio']:.3g} "
                         f"| {r['spikes_per_point']:.4g} | {r['synops_per_point']:.4g} | {r['first_point_spikes']:,} "
                         f"| {r['stream_s']:.1f} |")
    agree = [r for r in rows if r["kind"] == "agreement"]
    if agree:
        lines += ["", "## snnTorch against the numpy reference", "",
                  "Same artifact (E = 3e-3), 10^4 points in boustrophedon order; events counted per layer and "
                  "row (differing: Σ |Δ count|), outputs compared in full; times single-threaded CPU seconds "
                  "(one run, the numpy stream warm). Both runtimes compute the stream with "
                  "the specified float64 arithmetic of `runtimes.stream_math` (fixed-order sums, tanh from IEEE "
                  "basic operations), so they compute the same activations and send the same spikes bit for bit "
                  "(tests/test_delta.py, tests/test_stream_math.py); with each library's float32 MatMul and tanh "
                  "instead, 0 (spinn_burgers) to 6,890 (wave) events differed. `stream_arithmetic.md` compares the "
                  "two arithmetics on the same artifacts (error, energy, time).", "",
                  "| model | events | differing events | max \\|Δy\\| | numpy CPU s | snnTorch CPU s |",
                  "|---|---|---|---|---|---|"]
        for r in agree:
            lines.append(f"| {r['model']} | {r['events']:,} | {r['differing_events']:,} | "
                         f"{r['max_output_difference']:.2g} | {r['numpy_cpu_s']:.2f} | {r['snntorch_cpu_s']:.2f} |")
    MARKDOWN.write_text("\n".join(lines) + "\n")


def summary(streams: list[dict]) -> list[str]:
    """The issue's targets: E = 3e-3, Poisson on 10^4 and the 2-D models on 10^6 points, every order."""
    goals = {"poisson1d": 10 ** 4, "burgers": 10 ** 6, "diffusion_reaction": 10 ** 6, "wave": 10 ** 6,
             "spinn_burgers": 10 ** 6}
    lines = ["## Targets: ≤ 3e-3 from the ANN at ≤ 0.25x its energy (45 nm fp32, start-up included)", "",
             "| model | points | order | rel L2 vs ANN | SNN / ANN | delta ANN / ANN | met |", "|---|---|---|---|---|---|---|"]
    for model, points in goals.items():
        for r in (r for r in streams if r["model"] == model and r["points"] == points and r["target"] == 3e-3):
            met = r["rel_l2_snn_vs_ann"] <= 3e-3 and r["energy_ratio"] <= 0.25
            lines.append(f"| {model} | {points:,} | {r['order']} | {fmt(r['rel_l2_snn_vs_ann'])} | "
                         f"{r['energy_ratio']:.3g} | {r['delta_ann_ratio']:.3g} | {'yes' if met else 'no'} |")
    return lines


def plot(rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    streams = [r for r in rows if r["kind"] == "stream"]
    models = [m for m in MODELS if any(r["model"] == m for r in streams)]
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    colours = {"boustrophedon": "tab:blue", "hilbert": "tab:green", "random": "tab:red"}
    for ax, model in zip(axes[0], models):
        for order in ORDERS:
            for target, style in zip(TARGETS, ("-", "--", ":")):
                pick = sorted((r for r in streams if r["model"] == model and r["order"] == order
                               and r["target"] == target), key=lambda r: r["points"])
                if pick:
                    ax.loglog([r["points"] for r in pick], [r["energy_ratio"] for r in pick], style, marker="o",
                              ms=3, color=colours[order], label=f"{order}, E={target:g}")
        pick = sorted((r for r in streams if r["model"] == model and r["order"] == "boustrophedon"
                       and r["target"] == 3e-3), key=lambda r: r["points"])
        ax.loglog([r["points"] for r in pick], [r["delta_ann_ratio"] for r in pick], "-", color="k", alpha=0.5,
                  marker="s", ms=3, label="delta ANN, boustrophedon, E=3e-3")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(0.25, color="grey", lw=0.8, ls="--")
        ax.set_title(model)
        ax.set_xlabel("points in the grid")
        ax.set_ylabel("energy / ANN (45 nm fp32)")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)


def main(argv: list[str]) -> None:
    flags = [a for a in argv if a.startswith("--")]
    chosen = [a for a in argv if not a.startswith("--")] or list(MODELS)
    if "--fresh" in flags and JSONL.exists():
        JSONL.unlink()
    if "--agreement" in flags:
        kept = [r for r in load_rows(JSONL) if not (r["kind"] == "agreement" and r["model"] in chosen)]
        JSONL.write_text("".join(json.dumps(r) + "\n" for r in kept))
        for model in chosen:
            agreement_row(model)
            print(f"{model}: agreement done", file=sys.stderr, flush=True)
    elif "--plot-only" not in flags:
        for model in chosen:
            rows = load_rows(JSONL)
            done = {(r["model"], r["target"], r["points"], r["order"]) for r in rows if r["kind"] == "stream"}
            done |= {(r["model"], "agreement") for r in rows if r["kind"] == "agreement"}
            rows_for(model, done)
            print(f"{model}: done", file=sys.stderr, flush=True)
    rows = load_rows(JSONL)
    write_markdown(rows)
    plot(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
