"""The papers' conversion and calibration methods, one signed IF neuron per unit (``--pieces 1``), on the
shipped Poisson and Burgers PINNs: every method × T ∈ {8, …, 256}.

    OMP_NUM_THREADS=1 python benchmarks/calibration.py [--fresh]

Writes ``benchmarks/results/calibration.jsonl`` (a row per conversion, appended as they finish; rows already
there are skipped unless --fresh) and ``benchmarks/results/calibration.md``.  Errors are relative L2 on 2048
validation points that were not used for calibration.
"""

from __future__ import annotations

import sys

from common import RESULTS, ROOT, TIMESTEPS, append, convert_row, load_rows, pivot_table

MODELS = [ROOT / "models" / "poisson1d.onnx", ROOT / "models" / "burgers.onnx"]
METHODS = {
    "none (max θ)": dict(calibration="none"),
    "light": dict(calibration="light"),
    "potential": dict(calibration="potential"),
    "advanced": dict(calibration="advanced"),
    "refit": dict(calibration="refit"),
    "refit+light": dict(calibration="refit+light"),
    "refit+advanced": dict(calibration="refit+advanced"),
    "refit, mse θ": dict(calibration="refit", threshold="mse"),
    "refit, floor neuron + θ/2T shift": dict(calibration="refit", neuron="floor", shift=True, v0=0.0),
    "finetune (end-to-end, default)": dict(calibration="finetune"),
    "paper preset": dict(calibration="advanced", threshold="max", neuron="floor", readout="spiking"),
}


def main() -> None:
    path = RESULTS / "calibration.jsonl"
    if "--fresh" in sys.argv and path.exists():
        path.unlink()
    done = {(r["model"], r["method"], r["timesteps"]) for r in load_rows(path)}
    for model in MODELS:
        for T in TIMESTEPS:
            for label, options in METHODS.items():
                if (model.stem, label, T) in done:
                    continue
                row = convert_row(model, label, pieces=1, timesteps=T, **options)
                append(path, row)
                print(f"{model.stem:10s} T={T:<4d} {label:34s} snn-ann {row['rel_l2_snn_vs_ann']:.3e} "
                      f"spikes {row['spikes_per_sample']:.0f} calib {row['calibrate_s']:.1f}s", flush=True)
    write_markdown(load_rows(path))


def write_markdown(rows: list[dict]) -> None:
    models = [m.stem for m in MODELS]
    methods = list(METHODS)
    text = ["# Calibration methods, one signed IF neuron per unit (`--pieces 1`)", "",
            "Written by `benchmarks/calibration.py`; relative L2 on 2048 fresh validation points, 4096 "
            "calibration points, one thread.", "",
            "## SNN vs ANN", "", pivot_table(rows, "rel_l2_snn_vs_ann", models, methods), "",
            "## SNN vs exact solution", "", pivot_table(rows, "rel_l2_snn_vs_exact", models, methods), "",
            "## Spike rate", "", pivot_table(rows, "spike_rate", models, methods), "",
            "## Spikes per sample", "", pivot_table(rows, "spikes_per_sample", models, methods), "",
            "## Calibration time (s)", "", pivot_table(rows, "calibrate_s", models, methods), ""]
    (RESULTS / "calibration.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
