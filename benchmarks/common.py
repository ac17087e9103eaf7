"""Shared benchmark plumbing: one conversion → one results row; rows appended to a JSON-lines file as they
finish (a long run that is cut off still leaves its finished rows), and a Markdown table from them."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

import onnx2snn  # noqa: E402

TIMESTEPS = (8, 16, 32, 64, 128, 256)


def source_models(folder: Path) -> list[Path]:
    """The ONNX models in ``folder``, without the SNN artifacts converted from them (``*.snn.onnx``, e.g.
    the README's first command writes ``models/poisson1d.snn.onnx``)."""
    return sorted(p for p in folder.glob("*.onnx") if not p.name.endswith(".snn.onnx"))


def convert_row(model: Path, label: str, validation_points: int = 2048, **options) -> dict:
    started = time.perf_counter()
    result = onnx2snn.convert(model, validation_points=validation_points, **options)
    report = result.report
    v = report["validation"]
    return {
        "model": model.stem, "method": label, "timesteps": report["timesteps"],
        "rel_l2_snn_vs_ann": v["rel_l2_snn_vs_ann"], "rel_l2_snn_vs_exact": v.get("rel_l2_snn_vs_exact"),
        "rel_l2_ann_vs_exact": v.get("rel_l2_ann_vs_exact"), "spike_rate": report["spike_rate"],
        "spikes_per_sample": report["spikes_per_sample"], "synops_per_sample": report["synops_per_sample"],
        "ann_macs_per_sample": report["ann_macs_per_sample"],
        "energy_snn_45nm_pj": report["energy_pj_per_sample"]["snn_45nm"],
        "energy_ann_45nm_pj": report["energy_pj_per_sample"]["ann_45nm"],
        "calibrate_s": report["timing_s"]["calibrate"], "convert_s": report["timing_s"]["convert"],
        "wall_s": time.perf_counter() - started,
        "neurons": sum(l["spiking_neurons"] for l in report["layers"]),
        "activations": sorted({l["activation"] for l in report["layers"]}),
    }


def append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}e}" if (abs(value) < 1e-2 or abs(value) >= 1e5) and value != 0 else f"{value:.{digits + 1}g}"
    return str(value)


def pivot_table(rows: list[dict], key: str, models: list[str], methods: list[str]) -> str:
    """Markdown: one line per (model, method), one column per T, cells = rows[key]."""
    lines = [f"| model | method | " + " | ".join(f"T={T}" for T in TIMESTEPS) + " |",
             "|---|---|" + "---|" * len(TIMESTEPS)]
    for model in models:
        for method in methods:
            cells = {r["timesteps"]: r[key] for r in rows if r["model"] == model and r["method"] == method}
            if cells:
                lines.append(f"| {model} | {method} | " + " | ".join(fmt(cells.get(T)) for T in TIMESTEPS) + " |")
    return "\n".join(lines)
