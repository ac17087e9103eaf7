"""Error against energy: where each conversion method sits, per shipped model, under every cost table.

    OMP_NUM_THREADS=1 python benchmarks/energy.py [--fresh] [--plot-only] [MODEL.onnx ...]
    OMP_NUM_THREADS=1 python benchmarks/energy.py --fixtures     # --target-error on every test fixture
    ... [--targets=1e-2,3e-3] [--targets-only] [--methods=TEXT]   # which searches; only them; methods named so

Methods (``METHODS``): the papers' preset, one neuron per unit (finetune) across T, the default PWL
expansion, the spike-aware rate code (one neuron per unit with rest values moved to where spikes cost
least, ``--rest typical``, and the first layer analog where the cost table says its spikes cost more than
its MACs), the phase code (``--coding phase``: weighted spikes, T binary digits per unit), and
``--target-error`` 1e-2 and 3e-3 (the search's choice).  Each row: SNN vs ANN relative L2
on 16,384 fresh points, the energy ratio SNN / ANN under every cost table (``onnx2snn/energy_models.json``;
compute only, same table for both sides), spikes per sample, what the SNN spends its energy on, time.

``--fixtures`` runs only the ``--target-error`` searches, on every test fixture (``energy_fixtures.jsonl``).
Writes ``benchmarks/results/energy.jsonl`` (appended as rows finish; rows already there are skipped
unless ``--fresh``), ``energy.md`` and ``energy.png`` (log-log error against the 45 nm fp32 energy
ratio, one panel per model, one curve per method, the ANN at 1.0).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, append, fmt, load_rows, source_models

import onnx2snn
from onnx2snn.search import MARGIN, cheapest_conversion, first_layer_choice
from onnx2snn.calibration.pipeline import PHASE_FIRST_DIGITS
from onnx2snn.energy import DEFAULT_MODEL, load_tables

VALIDATION_POINTS = 16384
TABLE = load_tables()[DEFAULT_MODEL]


def first_layer(T: int) -> str:
    """The search's rule for moved rest values (``search.first_layer_choice``) on the 45 nm fp32 table."""
    return first_layer_choice(T, "typical", TABLE)


METHODS = {
    "paper preset": (dict(pieces=1, calibration="advanced", threshold="max", neuron="floor", readout="spiking"),
                     (8, 32)),
    "one neuron/unit (finetune)": (dict(pieces=1), (4, 8, 32)),
    "default PWL (auto)": (dict(), (8, 32)),
    "spike-aware (rest typical, first layer by rule)": (dict(pieces=1, rest="typical"), (4, 8, 16, 32)),
    "phase code (weighted spikes)": (dict(coding="phase"), (4, 5, 6, 7, 8, 10)),
}
TARGETS = (1e-2, 3e-3)
PATH = RESULTS / "energy.jsonl"
FIXTURES_PATH = RESULTS / "energy_fixtures.jsonl"


def commit() -> str:
    """The checkout's commit, recorded in every row (the code that measured it)."""
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def row(model, label: str, result, seconds: float, **extra) -> dict:
    report = result.report
    return {"model": model.stem, "method": label, "timesteps": report["timesteps"],
            "rel_l2_snn_vs_ann": report["validation"]["rel_l2_snn_vs_ann"],
            "rel_l2_snn_vs_exact": report["validation"].get("rel_l2_snn_vs_exact"),
            "energy_ratio": {k: v["ratio"] for k, v in report["energy"].items()},
            "spikes_per_sample": report["spikes_per_sample"], "synops_per_sample": report["synops_per_sample"],
            "neuron_updates_per_sample": report["neuron_updates_per_sample"],
            "spikes_per_synapse": report["spikes_per_synapse"],
            "breakdown_45nm_fp32_pj": report["energy_breakdown_pj"][DEFAULT_MODEL],
            "ann_45nm_fp32_pj": report["energy"][DEFAULT_MODEL]["ann_pj"],
            "pieces": report["pieces"], "coding": report["coding"], "first_layer": extra.pop("first_layer", "spiking"),
            "seconds": round(seconds, 1), "commit": commit(), **extra}


def run(models, path=PATH, methods=METHODS, targets=TARGETS) -> None:
    done = {(r["model"], r["method"], r["timesteps"]) for r in load_rows(path)}
    for model in models:
        for label, (options, steps) in methods.items():
            if options.get("coding") == "phase":
                run_phase_chain(model, label, options, steps, done, path)
                continue
            for T in steps:
                if (model.stem, label, T) in done:
                    continue
                extra = {"first_layer": first_layer(T)} if "spike-aware" in label else {}
                started = time.perf_counter()
                result = onnx2snn.convert(model, timesteps=T, validation_points=VALIDATION_POINTS,
                                          **options, **extra)
                append(path, row(model, label, result, time.perf_counter() - started, **extra))
                print(f"{model.stem} {label} T={T} done", file=sys.stderr, flush=True)
        default_seconds = None
        for target in targets:
            label = f"--target-error {target:g}"
            if any(r[0] == model.stem and r[1] == label for r in done):
                continue
            if default_seconds is None:      # the search's cost is quoted in default conversions
                started = time.perf_counter()
                onnx2snn.convert(model, validate=False)
                default_seconds = time.perf_counter() - started
            started = time.perf_counter()
            try:
                result = cheapest_conversion(model, target, validation_points=VALIDATION_POINTS)
            except onnx2snn.Onnx2SnnError as e:
                append(path, {"model": model.stem, "method": label, "timesteps": None, "failed": str(e),
                              "seconds": round(time.perf_counter() - started, 1)})
                continue
            chosen = result.report
            append(path, row(model, label, result, time.perf_counter() - started, target_error=target,
                             search=chosen["search"], first_layer=_chosen_first_layer(chosen),
                             default_seconds=round(default_seconds, 2)))
            print(f"{model.stem} {label} done", file=sys.stderr, flush=True)


def run_phase_chain(model, label: str, options: dict, steps, done: set, path) -> None:
    """The phase code's rows along T as one curriculum (``calibration.pipeline.calibrate``): T = 4 fitted in
    full, each next digit from the last; the same calibrations as converting at each T alone, at the cost
    of one chain.  A row's ``seconds`` is the chain's time up to it (what converting at its T costs)."""
    if all((model.stem, label, T) in done for T in steps):
        return
    started, previous = time.perf_counter(), None
    for T in range(PHASE_FIRST_DIGITS, max(steps) + 1):
        previous = onnx2snn.convert(model, timesteps=T, validation_points=VALIDATION_POINTS if T in steps else 64,
                                    warm_start=previous.calibration if previous else None, **options)
        if T in steps and (model.stem, label, T) not in done:
            append(path, row(model, label, previous, time.perf_counter() - started))
            print(f"{model.stem} {label} T={T} done", file=sys.stderr, flush=True)


def _chosen_first_layer(report: dict) -> str:
    return report["first_layer"]


def fixture_table(rows: list[dict]) -> list[str]:
    """``--target-error`` on every test fixture: the chosen conversion, its error on fresh points, energy."""
    commits = ", ".join(sorted({r.get("commit", "unknown") for r in rows}))
    lines = ["## `--target-error` on every test fixture", "",
             f"Searched at commit(s) {commits} (PWL along T, then the phase code along T, then the rate code "
             "with one neuron per unit only where neither met the goal; `search.py`).", "",
             "| fixture | target | chosen | T | SNN vs ANN (fresh) | met | x ANN 45nm_fp32 | candidates | s | "
             "default conversions |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("failed"):
            lines.append(f"| {r['model']} | {r['method'].split()[-1]} | failed: {r['failed'][:70]} | | | ✗ | | | {r['seconds']} |")
            continue
        met = [c for c in r["search"] if c["rel_l2_snn_vs_ann"] <= MARGIN * r["target_error"]]
        chosen = {"pwl": "PWL auto", "phase": "phase code", "finetune": "one neuron/unit"}[
            min(met, key=lambda c: c["energy_ratio"])["method"]]
        met = "✓" if r["rel_l2_snn_vs_ann"] <= r["target_error"] else "✗"
        lines.append(f"| {r['model']} | {r['target_error']:g} | {chosen}, first layer {r['first_layer']} | "
                     f"{r['timesteps']} | {fmt(r['rel_l2_snn_vs_ann'])} | {met} | {r['energy_ratio'][DEFAULT_MODEL]:.3g} | "
                     f"{len(r['search'])} | {r['seconds']} | {r['seconds'] / r['default_seconds']:.0f} |")
    return lines


def summary_table(rows: list[dict]) -> list[str]:
    """Per model, the cheapest row (45 nm fp32) within 1e-2 and within 3e-3 of the ANN, with its ratios on
    every table."""
    tables = list(load_tables())
    lines = ["## The cheapest conversion within an error, per model", "",
             "| model | within | method | T | SNN vs ANN | " + " | ".join(f"x ANN {t}" for t in tables) + " |",
             "|---|---|---|---|---|" + "---|" * len(tables)]
    for model in dict.fromkeys(r["model"] for r in rows):
        for bound in (1e-2, 3e-3):
            met = [r for r in rows if r["model"] == model and not r.get("failed") and r["rel_l2_snn_vs_ann"] <= bound]
            if not met:
                lines.append(f"| {model} | {bound:g} | none measured | | |" + " |" * len(tables))
                continue
            r = min(met, key=lambda r: r["energy_ratio"][DEFAULT_MODEL])
            lines.append(f"| {model} | {bound:g} | {r['method']} | {r['timesteps']} | {fmt(r['rel_l2_snn_vs_ann'])} | "
                         + " | ".join(f"{r['energy_ratio'][t]:.3g}" for t in tables) + " |")
    return lines + [""]


def write_markdown(rows: list[dict]) -> None:
    models = list(dict.fromkeys(r["model"] for r in rows))
    tables = list(load_tables())
    lines = ["# Error against energy", "",
             "Written by `benchmarks/energy.py`: SNN vs ANN relative L2 on 16,384 fresh points; energy per "
             "sample as a ratio SNN / ANN on the same cost table (compute only, memory excluded; tables in "
             "`onnx2snn/energy_models.json`). First layer: `analog` = computed once per point "
             "(`--first-layer analog`). Spent: the SNN's 45 nm fp32 energy by synaptic operations / neuron "
             "updates / first layer / analog nodes.", "",
             "![error against energy](energy.png)", ""] + summary_table(rows)
    for r in rows:                   # a target row's first layer is its chosen candidate's
        if r.get("search"):
            met = [c for c in r["search"] if c["rel_l2_snn_vs_ann"] <= MARGIN * r["target_error"]]
            r["first_layer"] = min(met, key=lambda c: c["energy_ratio"])["first_layer"]
    for model in models:
        lines += [f"## {model}", "", "| method | T | first layer | SNN vs ANN | " + " | ".join(f"x ANN {t}" for t in tables)
                  + " | spikes/sample | spikes/synapse | spent (syn / upd / first / analog) | s |",
                  "|---|---|---|---|" + "---|" * len(tables) + "---|---|---|---|"]
        for r in (r for r in rows if r["model"] == model):
            if r.get("failed"):
                lines.append(f"| {r['method']} | — | — | failed: {r['failed'][:80]} |" + " |" * (len(tables) + 4))
                continue
            b = r["breakdown_45nm_fp32_pj"]
            total = sum(b.values()) or 1.0
            spent = " / ".join(f"{100 * b[k] / total:.0f}%" for k in ("synops", "neuron_updates", "first_layer", "analog"))
            lines.append(f"| {r['method']} | {r['timesteps']} | {r['first_layer']} | {fmt(r['rel_l2_snn_vs_ann'])} | "
                         + " | ".join(f"{r['energy_ratio'][t]:.3g}" for t in tables)
                         + f" | {fmt(r['spikes_per_sample'])} | {r['spikes_per_synapse']:.3g} | {spent} | {r['seconds']} |")
        lines.append("")
    fixtures = load_rows(FIXTURES_PATH)
    if fixtures:
        lines += fixture_table(fixtures) + [""]
    (RESULTS / "energy.md").write_text("\n".join(lines))


def plot(rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r["model"] for r in rows))
    cols = 4
    fig, axes = plt.subplots((len(models) + cols - 1) // cols, cols, figsize=(4 * cols, 3.4 * ((len(models) + cols - 1) // cols)),
                             squeeze=False)
    methods = list(METHODS) + [f"--target-error {t:g}" for t in TARGETS]
    for ax, model in zip(axes.ravel(), models):
        for k, method in enumerate(methods):
            points = sorted((r["timesteps"], r["energy_ratio"][DEFAULT_MODEL], r["rel_l2_snn_vs_ann"]) for r in rows
                            if r["model"] == model and r["method"] == method and not r.get("failed"))
            if points:
                steps, x, y = zip(*points)
                ax.plot(x, y, "o-" if k < len(METHODS) else "*", label=method, color=f"C{k}",
                        ms=4 if k < len(METHODS) else 12)
                for T, xi, yi in points:
                    ax.annotate(str(T), (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.axhline(1e-2, color="grey", lw=0.6, ls="--")
        ax.set(xscale="log", yscale="log", title=model, xlabel="energy / ANN (45 nm fp32, compute only)",
               ylabel="rel. L2 vs ANN")
    for ax in axes.ravel()[len(models):]:
        ax.axis("off")
    handles = {}
    for ax in axes.ravel():               # every method once, from whichever panel has it
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    axes.ravel()[0].legend(handles.values(), handles.keys(), fontsize=6)
    fig.suptitle("SNN vs ANN error against energy per sample (points labelled with T; ANN = 1.0; dashed: 1e-2)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / "energy.png", dpi=110)


def main(argv: list[str]) -> None:
    if "--fresh" in argv and PATH.exists():
        PATH.unlink()
    models = [Path(a) for a in argv if a.endswith(".onnx")] or source_models(ROOT / "models")
    targets = next((tuple(float(t) for t in a.split("=", 1)[1].split(",")) for a in argv
                    if a.startswith("--targets=")), TARGETS)
    chosen = next((a.split("=", 1)[1] for a in argv if a.startswith("--methods=")), "")
    methods = {k: v for k, v in METHODS.items() if "--targets-only" not in argv and chosen in k}
    if "--fixtures" in argv:
        run(source_models(ROOT / "tests" / "fixtures"), FIXTURES_PATH, methods={}, targets=targets)
    elif "--plot-only" not in argv:
        run(models, methods=methods, targets=targets)
    rows = load_rows(PATH)
    write_markdown(rows)
    plot(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
