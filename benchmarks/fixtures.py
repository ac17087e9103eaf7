"""Default conversion of every golden fixture (torch, tf2onnx, jax2onnx exports) at T = 32 and 128.

    OMP_NUM_THREADS=1 python benchmarks/fixtures.py

Writes ``benchmarks/results/fixtures.md``: SNN vs ANN relative L2 on 1024 fresh domain points and spikes
per sample, against issue 4's targets (≤ 5e-3 at T=32, ≤ 2e-3 at T=128).
"""

from __future__ import annotations

from common import RESULTS, ROOT, convert_row, source_models

TARGETS = {32: 5e-3, 128: 2e-3}


def main() -> None:
    lines = ["# Golden fixtures, default conversion", "",
             "Written by `benchmarks/fixtures.py`; SNN vs ANN relative L2 on 1024 fresh validation points.", "",
             "| fixture | T=32 | spikes/sample | T=128 | spikes/sample |", "|---|---|---|---|---|"]
    for path in source_models(ROOT / "tests" / "fixtures"):
        cells = []
        for T, target in TARGETS.items():
            row = convert_row(path, "default", validation_points=1024, timesteps=T)
            mark = "✓" if row["rel_l2_snn_vs_ann"] <= target else "✗"
            cells += [f"{row['rel_l2_snn_vs_ann']:.2e} {mark}", f"{row['spikes_per_sample']:.0f}"]
        lines.append(f"| {path.stem} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    (RESULTS / "fixtures.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
