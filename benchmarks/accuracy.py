"""Accuracy against cost: one neuron per unit (best calibration) vs the piecewise-linear expansion
(K ∈ {4, 8, 16, 32} and auto) at T ∈ {8, …, 256}, per shipped model.

    OMP_NUM_THREADS=1 python benchmarks/accuracy.py [--fresh] [MODEL.onnx ...]

Writes ``benchmarks/results/accuracy.jsonl`` (appended as conversions finish) and ``accuracy.md``:
SNN vs ANN error, spikes per sample and synaptic operations per sample for every cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import RESULTS, ROOT, TIMESTEPS, append, convert_row, load_rows, pivot_table

METHODS = {
    "1 neuron/unit, refit": dict(pieces=1, calibration="refit"),
    "PWL K=4": dict(pieces=4),
    "PWL K=8": dict(pieces=8),
    "PWL K=16": dict(pieces=16),
    "PWL K=32": dict(pieces=32),
    "PWL auto (default)": dict(pieces="auto"),
}


def main() -> None:
    path = RESULTS / "accuracy.jsonl"
    if "--fresh" in sys.argv and path.exists():
        path.unlink()
    models = [Path(a) for a in sys.argv[1:] if a.endswith(".onnx")] or sorted((ROOT / "models").glob("*.onnx"))
    done = {(r["model"], r["method"], r["timesteps"]) for r in load_rows(path)}
    # the default and the papers' method first at every T, then the fixed-K sweep (long runs may be cut off)
    order = [(label, T) for label in ("PWL auto (default)", "1 neuron/unit, refit") for T in TIMESTEPS]
    order += [(label, T) for T in TIMESTEPS for label in METHODS if (label, T) not in order]
    for label, T in order:
        options = METHODS[label]
        for model in models:
                if (model.stem, label, T) in done:
                    continue
                row = convert_row(model, label, timesteps=T, **options)
                append(path, row)
                print(f"{model.stem:10s} T={T:<4d} {label:22s} snn-ann {row['rel_l2_snn_vs_ann']:.3e} "
                      f"spikes {row['spikes_per_sample']:.0f} convert {row['convert_s']:.1f}s", flush=True)
    write_markdown(load_rows(path))


def write_markdown(rows: list[dict]) -> None:
    models = sorted({r["model"] for r in rows})
    methods = list(METHODS)
    text = ["# Accuracy vs cost", "",
            "Written by `benchmarks/accuracy.py`; SNN vs ANN relative L2 on 2048 fresh validation points, "
            "default options otherwise (refit calibration, rounding neurons, analog readout), one thread.", "",
            "## SNN vs ANN (relative L2)", "", pivot_table(rows, "rel_l2_snn_vs_ann", models, methods), "",
            "## Spikes per sample", "", pivot_table(rows, "spikes_per_sample", models, methods), "",
            "## Synaptic operations per sample", "", pivot_table(rows, "synops_per_sample", models, methods), "",
            "## Conversion time (s, calibration included)", "", pivot_table(rows, "convert_s", models, methods), ""]
    (RESULTS / "accuracy.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
