"""The readable report (``onnx2snn MODEL --report DIR``) for every shipped model, default conversion at
T = 32, and an index table of them.

Writes ``benchmarks/results/reports/<model>/`` (``report.md``, ``report.json``, four PNG figures) and
``benchmarks/results/reports/README.md``.  Usage: ``python benchmarks/reports.py [--only MODEL ...]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, source_models

import onnx2snn  # noqa: E402
from onnx2snn.cli import report_timesteps  # noqa: E402
from onnx2snn.evaluate import evaluate  # noqa: E402
from onnx2snn.field import field  # noqa: E402
from onnx2snn.report_document import write_report  # noqa: E402

FOLDER = RESULTS / "reports"
TIMESTEPS = 32


def report_model(model: Path) -> dict:
    started = time.perf_counter()
    result = onnx2snn.convert(model, timesteps=TIMESTEPS)
    with tempfile.TemporaryDirectory() as scratch:     # the artifact beside a copy of its ANN
        artifact = result.save(Path(scratch) / f"{model.stem}.snn.onnx")
        shutil.copy(model, Path(scratch) / model.name)
        steps = report_timesteps(TIMESTEPS, "rate")
        evaluation = evaluate(artifact, timesteps=steps)
        shown = field(evaluation.imported, evaluation.network, evaluation.domain, TIMESTEPS)
        write_report(FOLDER / model.stem, evaluation.report, shown, f"{model.stem}: default conversion, T = {TIMESTEPS}")
    report = evaluation.report
    return {"model": model.stem, "seconds": time.perf_counter() - started, **report["validation"],
            "spikes_per_sample": report["spikes_per_sample"],
            "ratios": {k: e["ratio"] for k, e in report["energy"].items()},
            "spiking_mac_fraction": report["spiking_mac_fraction"]}


def index(rows: list[dict]) -> str:
    models = list(rows[0]["ratios"])
    lines = ["# Reports of the shipped models", "",
             f"Written by `benchmarks/reports.py`: `onnx2snn MODEL -T {TIMESTEPS} --report` for each shipped model "
             "(default conversion), measured on 2,048 fresh points by `onnx2snn evaluate`. Energy is compute only, "
             "as a ratio SNN / ANN on the same cost table.", "",
             "| model | SNN vs ANN | SNN vs exact | spikes/sample | MACs spiking | "
             + " | ".join(f"x ANN {m}" for m in models) + " | report |",
             "|---|---|---|---|---|" + "---|" * len(models) + "---|"]
    for r in rows:
        exact = f"{r['rel_l2_snn_vs_exact']:.2e}" if "rel_l2_snn_vs_exact" in r else "-"
        lines.append(f"| {r['model']} | {r['rel_l2_snn_vs_ann']:.2e} | {exact} | {r['spikes_per_sample']:,.0f} | "
                     f"{100 * r['spiking_mac_fraction']:.0f}% | " + " | ".join(f"{r['ratios'][m]:.3g}" for m in models)
                     + f" | [{r['model']}]({r['model']}/report.md) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="model stems to report (default: all shipped models)")
    args = parser.parse_args()
    models = [m for m in source_models(ROOT / "models") if not args.only or m.stem in args.only]
    rows = []
    for model in models:
        rows.append(report_model(model))
        print(f"{model.stem}: {rows[-1]['rel_l2_snn_vs_ann']:.2e} vs ANN, {rows[-1]['ratios']['45nm_fp32']:.3g}x "
              f"ANN (45nm_fp32), {rows[-1]['seconds']:.0f} s", flush=True)
    if not args.only:
        (FOLDER / "README.md").write_text(index(rows))


if __name__ == "__main__":
    main()
