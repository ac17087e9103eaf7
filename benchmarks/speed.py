"""Cost of one SNN time step, in units of one onnxruntime forward pass of the original ANN.

For each model and conversion (default piecewise-linear neurons, and ``pieces=1`` signed neurons) at
T = 32, on the same batch of 10,000 domain points (a separable network: a grid of about as many, ⌈N^(1/d)⌉
per axis), one thread everywhere, measured side by side in one process: the ANN pass is timed just before
and after each backend run, and

    cost = (run time of the SNN for T steps / T) / (mean ANN forward pass time)

Also reported: neuron updates per second (Σ over IF layers of live neurons × rows advanced per second,
from the run's own spike counts; θ = inf padding is not a neuron), and each backend's agreement with
numpy (spike counts, relative L2 of the outputs).  Targets: numpy and onnxruntime <= 1.0, snnTorch CPU
<= 3.0.  snnTorch on CUDA is measured when CUDA is available (backend ``snntorch-cuda``); ``--large N``
adds, for each GPU backend, a run of N points at T = 128 with its peak GPU memory (bounded by the
chunking of ``SpikingNetwork``; ``--large-models``).  ``--artifacts DIR`` reuses the converted models
found there and writes the others (one-neuron conversions take ~90 s each on one CPU thread: convert
beforehand, then carry DIR to the GPU machine).  On a GPU machine, e.g.:

    python benchmarks/speed.py --backends numpy,snntorch-cuda --points 100000 \
        --models poisson1d,burgers,diffusion_reaction,wave --large 1000000 --name speed_cuda --artifacts DIR

    OMP_NUM_THREADS=1 python benchmarks/speed.py [--points 10000] [--timesteps 32] [--out benchmarks/results]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from numba import njit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx2snn  # noqa: E402
from onnx2snn.domain import parse_domain  # noqa: E402
from onnx2snn.importer import import_model  # noqa: E402
from onnx2snn.inputs import validation_inputs  # noqa: E402
from runtimes.network import SpikingNetwork, neuron_counts  # noqa: E402
from runtimes.numpy_ref import NumpyRuntime  # noqa: E402
from runtimes.spec import META_DOMAIN  # noqa: E402

MODELS = {"poisson1d": ROOT / "models" / "poisson1d.onnx",
          "torch_tanh_gemm": ROOT / "tests" / "fixtures" / "torch_tanh_gemm.onnx",
          "burgers": ROOT / "models" / "burgers.onnx",
          "diffusion_reaction": ROOT / "models" / "diffusion_reaction.onnx",
          "wave": ROOT / "models" / "wave.onnx",
          "poisson1d_jax": ROOT / "models" / "poisson1d_jax.onnx",
          "poisson1d_keras": ROOT / "models" / "poisson1d_keras.onnx",
          "spinn_burgers": ROOT / "models" / "spinn_burgers.onnx",
          "spinn_beltrami": ROOT / "models" / "spinn_beltrami.onnx"}
DEFAULT_MODELS = "poisson1d,burgers,diffusion_reaction,wave,poisson1d_jax,poisson1d_keras,spinn_burgers," \
                 "spinn_beltrami,torch_tanh_gemm"
BACKENDS = ("numpy", "onnxruntime", "snntorch-cpu", "snntorch-cuda")
LARGE_TIMESTEPS = 128
CONVERSIONS = [("default", {}), ("pieces=1", {"pieces": 1})]
TARGETS = {"numpy": 1.0, "onnxruntime": 1.0, "snntorch-cpu": 3.0}


def ann_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_ann(session: ort.InferenceSession, feeds: dict, repeats: int = 15) -> list[float]:
    session.run(None, feeds)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return times


def compare(reference, result) -> dict:
    rel = max(float(np.linalg.norm(result.outputs[k].astype(np.float64) - v) / np.linalg.norm(v.astype(np.float64)))
              for k, v in reference.outputs.items())
    diff = sum(abs(result.spikes[k].events - v.events) for k, v in reference.spikes.items())
    total = sum(v.events for v in reference.spikes.values())
    return {"rel_l2_vs_numpy": rel, "events_differing": diff, "events": total}


def products_time(model: onnx.ModelProto, points: int, repeats: int = 5) -> float | None:
    """Seconds per step of the matrix products alone in the numpy runtime's compiled chain
    (``runtimes.chain``): the same BLAS products on the chain's blocks of points in a compiled loop,
    no neuron, best of ``repeats``; None where the artifact runs no single chain."""
    runtime = NumpyRuntime(model, 1)
    stages = [chains for chains in runtime.chains if chains is not None]
    if not runtime.blocks_itself or len(stages) != 1 or len(stages[0]) != 1:
        return None
    chain = stages[0][0]
    matrices = [np.require(w.T, requirements="CW") for w in chain.matrices]
    rng = np.random.default_rng(0)
    rows = chain.block_rows
    inputs = [rng.standard_normal((w.shape[1], rows)).astype(w.dtype) for w in matrices]
    outputs = [np.empty((w.shape[0], rows), w.dtype) for w in matrices]
    blocks = -(-points // rows)
    _products(tuple(matrices), tuple(inputs), tuple(outputs), 1)           # compile
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        _products(tuple(matrices), tuple(inputs), tuple(outputs), blocks)
        best = min(best, time.perf_counter() - started)
    return best


@njit(nogil=True)
def _products(matrices, inputs, outputs, blocks):
    for _ in range(blocks):
        for k in range(len(matrices)):
            np.dot(matrices[k], inputs[k], outputs[k])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--timesteps", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated; the first is the reference of the agreement column")
    parser.add_argument("--large", type=int, default=0, help=f"points of a T={LARGE_TIMESTEPS} run per GPU backend")
    parser.add_argument("--large-models", default="poisson1d", help="models of the --large runs (default poisson1d)")
    parser.add_argument("--name", default="speed", help="results file stem (default speed: speed.md, speed.json)")
    parser.add_argument("--artifacts", type=Path, default=None,
                        help="folder of converted models: reused where present, written where not")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",")]
    wanted = [b.strip() for b in args.backends.split(",")]
    unknown = [m for m in models if m not in MODELS] + [b for b in wanted if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown model(s) or backend(s): {', '.join(unknown)}")
    try:
        import torch

        from runtimes.snntorch_backend import SnnTorchRuntime
        torch.set_num_threads(1)
        cuda = torch.cuda.is_available()
    except ImportError:
        torch, SnnTorchRuntime, cuda = None, None, False
    T, points = args.timesteps, args.points
    makers = {"numpy": lambda m, t: SpikingNetwork(m, "numpy", t),
              "onnxruntime": lambda m, t: SpikingNetwork(m, "onnxruntime", t),
              "snntorch-cpu": lambda m, t: SpikingNetwork(m, "snntorch", t),
              "snntorch-cuda": lambda m, t: SpikingNetwork(m, "snntorch", t, device="cuda")}
    runnable = {"snntorch-cpu": SnnTorchRuntime is not None, "snntorch-cuda": cuda}
    backends = [b for b in wanted if runnable.get(b, True)]
    rows, large = [], []
    for model_name in models:
        path = MODELS[model_name]
        session = ann_session(path)
        imported = import_model(path)
        for conversion, options in CONVERSIONS:
            snn, domain = converted(path, model_name, conversion, options, T, args.artifacts)
            feeds = validation_inputs(imported, domain, points, np.random.default_rng(0))
            live, dense = neuron_counts(snn)
            # as users run them: SpikingNetwork, which steps cache-sized chunks of points on a CPU
            reference = None
            for backend in backends:
                runtime = makers[backend](snn, T)
                small = {k: v[:16] for k, v in feeds.items()}
                runtime.run_with_stats(small)                      # warm-up (compilation, sessions)
                ann_before = time_ann(session, feeds)
                started = time.perf_counter()
                out = runtime.run_with_stats(feeds)
                if backend == "snntorch-cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - started
                ann_after = time_ann(session, feeds)
                ann = statistics.mean(statistics.median(t) for t in (ann_before, ann_after))
                step = seconds / T
                updates = sum(c.neurons * c.batch for c in out.spikes.values())      # per step
                row = {"model": model_name, "conversion": conversion, "backend": backend, "points": points,
                       "rows": {k: int(v.shape[0]) for k, v in feeds.items()},
                       "timesteps": T, "ann_ms": ann * 1e3, "step_ms": step * 1e3, "cost_ann_passes": step / ann,
                       "target": TARGETS.get(backend), "dense_neurons_per_point": dense,
                       "live_neurons_per_point": live, "neuron_updates_per_s": updates / step}
                if reference is None:
                    reference = out
                row.update(compare(reference, out))
                if backend == "numpy":
                    products = products_time(snn, points)
                    row["products_ann_passes"] = None if products is None else products / ann
                row["meets_target"] = None if row["target"] is None else row["cost_ann_passes"] <= row["target"]
                rows.append(row)
            if args.large and model_name in args.large_models.split(",") and any(b.endswith("cuda") for b in backends):
                large += _large_runs(path, options, model_name, conversion, args.large,
                                     [b for b in backends if b.endswith("cuda")], makers, torch, args.artifacts)
    environment = {"python": platform.python_version(), "numpy": np.__version__, "onnxruntime": ort.__version__,
                   "torch": torch.__version__ if torch else None, "cpu": _cpu(), "threads": 1,
                   "cuda": torch.cuda.get_device_name() if cuda else None}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"environment": environment, "results": rows,
                                                            "large": large},
                                                           indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(_markdown(rows, large, environment, cuda))
    sys.stdout.write((args.out / f"{args.name}.md").read_text())
    return 0


def converted(path: Path, model_name: str, conversion: str, options: dict, timesteps: int,
              artifacts: Path | None) -> tuple[onnx.ModelProto, dict]:
    """The SNN artifact and its domain: converted now, or read from ``artifacts`` where an earlier run
    (or another machine: conversion runs on the CPU) left it, and written there where it did not."""
    stem = f"{model_name}-{conversion.replace('=', '')}-T{timesteps}"
    cached = None if artifacts is None else artifacts / f"{stem}.snn.onnx"
    if cached is not None and cached.exists():
        snn = onnx.load(str(cached))
        metadata = {p.key: p.value for p in snn.metadata_props}
        return snn, parse_domain(metadata[META_DOMAIN])
    result = onnx2snn.convert(path, timesteps=timesteps, validate=False, **options)
    if cached is not None:
        artifacts.mkdir(parents=True, exist_ok=True)
        result.save(cached)
    return result.model, result.domain


def _large_runs(path: Path, options: dict, model_name: str, conversion: str, points: int, backends: list[str],
                makers: dict, torch, artifacts: Path | None) -> list[dict]:
    """``points`` domain points at T = LARGE_TIMESTEPS on each GPU backend: time, peak GPU memory."""
    snn, domain = converted(path, model_name, conversion, options, LARGE_TIMESTEPS, artifacts)
    feeds = validation_inputs(import_model(path), domain, points, np.random.default_rng(1))
    out = []
    for backend in backends:
        network = makers[backend](snn, LARGE_TIMESTEPS)
        network.run_with_stats({k: v[:16] for k, v in feeds.items()})
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        run = network.run_with_stats(feeds)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        out.append({"model": model_name, "conversion": conversion, "backend": backend, "points": points,
                    "timesteps": LARGE_TIMESTEPS, "chunk_rows": network._block_rows, "seconds": seconds,
                    "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30,
                    "neuron_updates_per_s": sum(c.neurons * c.batch for c in run.spikes.values())
                    * LARGE_TIMESTEPS / seconds,
                    "outputs_finite": bool(all(np.isfinite(v).all() for v in run.outputs.values()))})
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _markdown(rows: list[dict], large: list[dict], environment: dict, cuda: bool) -> str:
    lines = ["# SNN step cost vs one ANN forward pass", "",
             f"One SNN time step, in onnxruntime forward passes of the original ANN on the same "
             f"{rows[0]['points']:,}-point batch; T = {rows[0]['timesteps']}; one thread "
             f"(OMP_NUM_THREADS=1, torch.set_num_threads(1), onnxruntime intra_op_num_threads=1); CPU: "
             f"{environment['cpu']}; numpy {environment['numpy']}, onnxruntime {environment['onnxruntime']}, "
             f"torch {environment['torch']}.  A separable network (SPINN) runs on a grid of about as many points, "
             f"⌈N^(1/d)⌉ rows per axis input; its neurons per point are per row, summed over the axis networks.  "
             f"Written by `benchmarks/speed.py`.", "",
             "| model | conversion | neurons/point (live / dense) | ANN pass (ms) | backend | SNN step (ms) "
             "| cost (ANN passes) | target | neuron updates/s | agreement with numpy |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target = "–" if r["target"] is None else f"≤ {r['target']:.1f} {'✓' if r['meets_target'] else '✗'}"
        agree = "reference" if r["backend"] == "numpy" else \
            f"rel L2 {r['rel_l2_vs_numpy']:.1e}, {r['events_differing']} of {r['events']:,} events differ"
        grid = f" ({'×'.join(str(n) for n in r['rows'].values())} grid)" if len(r["rows"]) > 1 else ""
        lines.append(f"| {r['model']}{grid} | {r['conversion']} | {r['live_neurons_per_point']} / "
                     f"{r['dense_neurons_per_point']} | {r['ann_ms']:.2f} | {r['backend']} | {r['step_ms']:.2f} | "
                     f"{r['cost_ann_passes']:.2f} | {target} | {r['neuron_updates_per_s']:.2e} | {agree} |")
    floors = [f"{r['model']} {r['conversion']} {r['products_ann_passes']:.2f}" for r in rows
              if r["backend"] == "numpy" and r.get("products_ann_passes") is not None]
    lines += ["", "Where the time goes: one ANN pass of poisson1d costs a point ~30k multiply-adds (MLAS) and one tanh "
              "per unit.  One SNN step costs the same matrix products (the PWL expansion in factored form: decode, "
              "then multiply by W) plus one IF update per live neuron.  The numpy runtime runs an MLP's whole stage "
              "as one compiled loop (`runtimes/chain.py`, numba): the T steps, each layer's IF update, decode and "
              "bias in one pass over its membranes (`runtimes/kernels.py`, ~0.3 ns per update) and the BLAS "
              "products, on blocks of 64-1,024 points that stay in cache, with no Python between steps.  The matrix "
              "products alone (same BLAS calls and blocks, no neuron, in ANN passes): " + "; ".join(floors) + ".  "
              "With the default expansion's ~10 live neurons per unit the updates dominate: poisson1d's 4,082 per "
              "point make 4·10⁷ per step on 10,000 points, about one ANN pass even at 0.2 ns each, on top of the "
              "products, so a dense step cannot reach 1.0 on this CPU.  onnxruntime runs the standard-ONNX rewrite "
              "(one op, one memory pass per elementwise operation) and snnTorch its torch ops, so neither has the fused loop.  The ANN pass is timed right "
              "before and after each SNN run and the cost uses their mean; on a shared machine single numbers can "
              "move by ~20 %.", ""]
    if cuda:
        lines += [f"snnTorch on CUDA: measured on {environment['cuda']} (rows `snntorch-cuda`).  Their cost column "
                  "divides a GPU step by a one-thread CPU pass of the ANN, so it compares devices, not methods; "
                  "neuron updates/s is the GPU's figure.  Each step runs about ten torch kernels per IF layer "
                  "(integrate, two comparisons, amplitudes, reset, decode; one block of the layer's live neurons "
                  "where less than half of its dense [units, pieces] grid is live, `runtimes/padfree.py`, then "
                  "one decode sum per group of units with as many neurons), none fused, on chunks of points "
                  "sized to the free GPU memory (`SnnTorchRuntime.block_rows`).", ""]
    else:
        lines += ["snnTorch on CUDA: not measured here — `torch.cuda.is_available()` is false; "
                  "`benchmarks/results/speed_cuda.md` holds the GPU run (see this script's docstring).", ""]
    if large:
        lines += [f"Bounded memory on the GPU: {large[0]['points']:,} points at T = {large[0]['timesteps']}, run by "
                  "`SpikingNetwork` in chunks of points sized to the free GPU memory:", "",
                  "| model | conversion | backend | chunk (points) | time (s) | peak GPU memory (GiB) "
                  "| neuron updates/s | outputs finite |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['conversion']} | {r['backend']} | {r['chunk_rows']:,} | {r['seconds']:.1f} "
                  f"| {r['peak_gpu_gib']:.1f} | {r['neuron_updates_per_s']:.2e} "
                  f"| {'yes' if r['outputs_finite'] else 'NO'} |" for r in large]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
