"""What the delta stream's specified float64 arithmetic (``runtimes.stream_math``) costs, against the
float32 library arithmetic it replaced (commit ``BASE``), on the same artifacts and points, in one run.

    OMP_NUM_THREADS=1 python benchmarks/stream_arithmetic.py [--base COMMIT]

Per model (``CASES``: burgers on a 200x200 grid, wave and spinn_burgers on 100x100), the model is
converted once with ``--coding delta --target-error 3e-3`` (current code) and that artifact streams the
grid of cell midpoints in boustrophedon order, by the numpy reference and by snnTorch (CPU, one thread),
first with the ``BASE`` tree's code (``git archive``, imported in a child process), then with this
tree's.  Each row: the single-threaded stream time of each runtime (CPU seconds of the process, best of
``REPEATS``; wall seconds too), the relative L2 error vs the ANN (onnxruntime) and the energy ratio (45 nm
fp32, start-up included) of the numpy stream, its events, and the events in which snnTorch differs from
numpy (Σ over layers and points of |Δ count|) with the largest output difference.  Each tree also
converts the model itself (its calibration streams with its own arithmetic): CPU seconds, and the
validation error and energy ratio its report states.

Writes ``benchmarks/results/stream_arithmetic.jsonl`` (one row per model and tree) and
``stream_arithmetic.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
JSONL, MARKDOWN = RESULTS / "stream_arithmetic.jsonl", RESULTS / "stream_arithmetic.md"
BASE = "ab224d5"            # the last commit whose delta streams used each library's float32 MatMul and tanh
CASES = {"burgers": 200 * 200, "wave": 100 * 100, "spinn_burgers": 100 * 100}
TARGET, ORDER, REPEATS = 3e-3, "boustrophedon", 2


def measure(artifact: Path, model: str, points: int) -> dict:
    """In the child: stream the grid with numpy and snnTorch; times, error, energy and agreement."""
    import numpy as np
    import onnx
    import torch

    import onnx2snn
    import runtimes
    from onnx2snn.ann import run_ann
    from onnx2snn.delta.convert import grid_points
    from onnx2snn.delta.stream import stream, stream_report
    from onnx2snn.domain import parse_domain
    from onnx2snn.importer import import_model
    from onnx2snn.structure import analyse
    from runtimes import spec
    from runtimes.network import SpikingNetwork
    torch.set_num_threads(1)
    snn = onnx.load(artifact)
    imported = import_model(ROOT / "models" / f"{model}.onnx")
    box = parse_domain({m.key: m.value for m in snn.metadata_props}[spec.META_DOMAIN])
    grid = grid_points(imported, box, points, midpoints=True)
    row = {"runtimes": str(Path(runtimes.__file__).parent)}
    started = time.process_time()
    own = onnx2snn.convert(ROOT / "models" / f"{model}.onnx", coding="delta", target_error=TARGET).report
    row.update(convert_cpu_s=time.process_time() - started,
               convert_rel_l2=own["validation"]["rel_l2_snn_vs_ann"],
               convert_energy_ratio=own["energy"]["45nm_fp32"]["ratio"])
    runs = {}
    for backend in ("numpy", "snntorch"):
        network = SpikingNetwork(snn, backend=backend, source=model)
        stream(network, {k: v[:256] for k, v in grid.items()}, ORDER)            # compile, warm up
        cpu, wall = [], []
        for _ in range(REPEATS):
            started, started_cpu = time.perf_counter(), time.process_time()
            runs[backend] = stream(network, grid, ORDER)
            cpu.append(time.process_time() - started_cpu)
            wall.append(time.perf_counter() - started)
        row[f"{backend}_cpu_s"], row[f"{backend}_wall_s"] = min(cpu), min(wall)
    reference, got = runs["numpy"], runs["snntorch"]
    name = next(iter(reference.outputs))
    y, ann = reference.outputs[name], run_ann(imported.model, grid)[name]
    network = SpikingNetwork(snn, source=model)
    report = stream_report(imported, analyse(imported.model), network, grid, ORDER, streamed=reference)
    counts = reference.run.spikes
    row.update(
        rel_l2_snn_vs_ann=float(np.linalg.norm(y - ann) / np.linalg.norm(ann)),
        energy_ratio=report["energy"]["45nm_fp32"]["ratio"], output_dtype=str(y.dtype),
        events=int(sum(c.events for c in counts.values())),
        differing_events=int(sum(np.abs(got.run.spikes[k].per_row - c.per_row).sum()
                                 for k, c in counts.items())),
        max_output_difference=float(np.max(np.abs(got.outputs[name].astype(np.float64) - y))))
    return row


def child(tree: Path, artifact: Path, model: str, points: int) -> dict:
    """``measure`` in a fresh interpreter that imports ``onnx2snn`` and ``runtimes`` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", str(tree), str(artifact), model, str(points)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def base_tree(commit: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "onnx2snn", "runtimes", "models"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def write_markdown(rows: list[dict]) -> None:
    lines = ["# Delta streams: specified float64 arithmetic against each library's float32 arithmetic", "",
             "`benchmarks/stream_arithmetic.py`: one artifact per model (`--coding delta --target-error 3e-3`), "
             "streamed over a grid of cell midpoints in boustrophedon order by the numpy reference and by "
             "snnTorch (CPU, one thread), with the runtimes of commit "
             f"`{rows[0]['base']}` (float32, numpy's BLAS and tanh vs torch's) and with `runtimes.stream_math` "
             "(float64, fixed-order sums, specified tanh), in one run. Times: CPU seconds of the "
             "single-threaded process, best of 2 (wall seconds in the jsonl). Error: relative L2 vs the ANN "
             "(onnxruntime); energy: 45 nm fp32, start-up included.", "",
             "| model | points | arithmetic | numpy s | snnTorch s | rel L2 vs ANN | SNN / ANN | events "
             "| events snnTorch ≠ numpy | max \\|Δy\\| snnTorch vs numpy |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['points']:,} | {r['arithmetic']} | {r['numpy_cpu_s']:.3f} | "
                     f"{r['snntorch_cpu_s']:.2f} | {r['rel_l2_snn_vs_ann']:.4e} | {r['energy_ratio']:.4f} | "
                     f"{r['events']:,} | {r['differing_events']:,} | {r['max_output_difference']:.2g} |")
    lines += ["", "Each tree converting the model itself (its calibration streams with its own arithmetic; "
              "the thresholds it chooses may differ):", "",
              "| model | arithmetic | convert CPU s | validation rel L2 vs ANN | SNN / ANN |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['arithmetic']} | {r['convert_cpu_s']:.1f} | {r['convert_rel_l2']:.4e} "
                     f"| {r['convert_energy_ratio']:.4f} |")
    MARKDOWN.write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        tree, artifact, model, points = argv[1:]
        sys.path.insert(0, tree)
        print(json.dumps(measure(Path(artifact), model, int(points))))
        return
    base = argv[argv.index("--base") + 1] if "--base" in argv else BASE
    sys.path.insert(0, str(ROOT))
    import onnx
    import onnx2snn
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = base_tree(base, Path(tmp) / "base")
        for model, points in CASES.items():
            started = time.perf_counter()
            result = onnx2snn.convert(ROOT / "models" / f"{model}.onnx", coding="delta", target_error=TARGET)
            artifact = Path(tmp) / f"{model}.snn.onnx"
            onnx.save(result.model, artifact)
            print(f"{model}: converted in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            for arithmetic, tree in (("float32, library (before)", old), ("float64, stream_math", ROOT)):
                row = {"model": model, "points": points, "arithmetic": arithmetic, "base": base,
                       "theta": [t["theta"] for t in result.report["thresholds"]],
                       **child(tree, artifact, model, points)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    JSONL.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_markdown(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
