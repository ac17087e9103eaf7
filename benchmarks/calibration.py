"""The papers' conversion and calibration methods, one signed IF neuron per unit (``--pieces 1``), on the
shipped Poisson and Burgers PINNs: every method × T ∈ {8, …, 256}.

    OMP_NUM_THREADS=1 python benchmarks/calibration.py [--fresh] [--every-model]

Writes ``benchmarks/results/calibration.jsonl`` (a row per conversion, appended as they finish; rows already
there are skipped unless --fresh) and ``benchmarks/results/calibration.md``.  ``--every-model`` instead
converts every shipped model and test fixture with the default for one neuron per unit at T=32
(``calibration_models.jsonl``, the last table of ``calibration.md``).  Errors are relative L2 on 2048
validation points that were not used for calibration.
"""

from __future__ import annotations

import sys

from common import RESULTS, ROOT, TIMESTEPS, append, convert_row, fmt, load_rows, pivot_table, source_models

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


def every_model() -> None:
    """Default one-neuron-per-unit conversion (finetune) at T=32 of every shipped model and fixture."""
    path = RESULTS / "calibration_models.jsonl"
    done = {r["model"] for r in load_rows(path)}
    for model in source_models(ROOT / "models") + source_models(ROOT / "tests" / "fixtures"):
        if model.stem in done:
            continue
        row = convert_row(model, "finetune (default)", pieces=1, timesteps=32)
        append(path, row)
        print(f"{model.stem:28s} {'+'.join(row['activations']):14s} snn-ann {row['rel_l2_snn_vs_ann']:.3e}", flush=True)


def main() -> None:
    if "--every-model" in sys.argv:
        every_model()
        write_markdown(load_rows(RESULTS / "calibration.jsonl"))
        return
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
    every = load_rows(RESULTS / "calibration_models.jsonl")
    if every:
        text += ["## Every shipped model and fixture, one neuron per unit, default calibration (finetune), T=32",
                 "", "| model | activations | SNN vs ANN | SNN vs exact | spikes/sample | calibration (s) |",
                 "|---|---|---|---|---|---|"]
        text += [f"| {r['model']} | {'+'.join(r['activations'])} | {fmt(r['rel_l2_snn_vs_ann'])} | "
                 f"{fmt(r['rel_l2_snn_vs_exact'])} | {fmt(r['spikes_per_sample'])} | {r['calibrate_s']:.1f} |"
                 for r in every] + [""]
    (RESULTS / "calibration.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
