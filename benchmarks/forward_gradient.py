"""Forward-only training against BPTT: every estimator on every task at equal forward-pass budgets.

    OMP_NUM_THREADS=1 python benchmarks/forward_gradient.py [--fresh] [--redo PART ...] [--workers 2] [--only PART ...]
                                                           [--report-only]

Parts (``PARTS``), each a list of runs (task, estimator, T, budget in forward-pass equivalents, seed):

* ``x2``: x² (1-64×4-1, T = 32) at 9,000 FPE, every estimator, seeds 0-2 (the issue's equal-budget table);
* ``x2-30k``: x² at 30,000 FPE, BPTT and the forward-only estimator that did best at 9,000, seeds 0-2;
* ``x2-t128``: x² at T = 128, BPTT, 30,000 FPE (the group's full budget: 10,000 full-batch steps);
* ``x2-lif``: x² with LIF neurons (λ = 0.9) at 9,000 FPE, BPTT and rate-jacobian, seeds 0-2 (the rate
  Jacobian's telescoping argument holds for IF neurons only);
* ``ricker``, ``separable-2d``: every estimator at 9,000 FPE, seeds 0-2;
* ``deeponet``: the Poisson DeepONet at T = 128, 6,000 FPE: BPTT and rate-jacobian, seeds 0-2, and
  activity, activity-rate, rfg-layer and activity-rate-layer, seed 0 (a DeepONet run takes 3-18 minutes);
* ``deeponet-rest``: rfg-global, weight-fd and activity-layer on the DeepONet, seed 0;
* ``ann``: the ANN baseline, the same widths with tanh trained by back-propagation (``ann_rows``);
* ``cosine``: the cosine between each estimator's estimate and the BPTT gradient (x², T = 32, at
  initialisation and at the network BPTT trained for 3,000 FPE, 64 draws; mean and the cosine of the
  64-draw mean);
* ``step``: each estimator's step time measured side by side in one process at T = 32 and 128 (median
  of 5 interleaved rounds) with the peak memory of a fresh process per estimator and T;
* ``calibration``: ``--calibration forward`` on the shipped Poisson model at T = 32 against the layer-wise
  calibration it starts from and the same fit by back-propagation (error vs the ANN on fresh points).

Rows go to ``benchmarks/results/forward_gradient.jsonl`` as they finish (rows already there are skipped
unless ``--fresh``, or ``--redo PART ...`` which drops those parts' rows first); ``forward_gradient.md`` and ``forward_gradient.png`` (test error against FPE on x²,
one curve per estimator, seed 0) are written from them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, append, fmt, load_rows

import numpy as np
import torch

from onnx2snn.training import train_network
from onnx2snn.training.estimators import ESTIMATORS, Objective, estimate
from onnx2snn.training.specification import Specification
from onnx2snn.training.surrogate import Surrogate
from onnx2snn.training.tasks import load_task
from onnx2snn.training.trainer import NOISE_FREE, build_model, decayed, default_learning_rate

OUT = RESULTS / "forward_gradient.jsonl"
FORWARD_ONLY = [e for e in ESTIMATORS if e != "bptt"]


def run(task: str, estimator: str, timesteps: int, budget: float, seed: int, leak: float = 1.0) -> dict:
    torch.set_num_threads(1)
    started = time.perf_counter()
    spec = Specification(load_task(task), leak=leak)
    trained = train_network(spec, estimator=estimator, budget_fpe=budget, timesteps=timesteps, seed=seed)
    r = trained.report
    return {"part": None, "task": task, "estimator": estimator, "timesteps": timesteps, "budget_fpe": budget,
            "seed": seed, "leak": leak, "learning_rate": default_learning_rate(estimator, budget), "test_rel_l2": r["test_rel_l2"],
            "artifact_test_rel_l2": r["artifact_test_rel_l2"], "spikes_per_sample": r["spikes_per_sample"],
            "iterations": r["iterations"], "train_s": r["seconds"], "wall_s": time.perf_counter() - started,
            "parameters": r["parameters"],
            "curve": [{k: c[k] for k in ("fpe", "seconds", "loss", "test_rel_l2")} for c in r["curve"]]}


def plan(part: str, done: list[dict]) -> list[tuple]:
    if part == "x2":
        return [("x2", e, 32, 9000.0, s) for e in ESTIMATORS for s in range(3)]
    if part == "x2-30k":
        finished = [r for r in done if r["part"] == "x2"]
        best = sorted(FORWARD_ONLY, key=lambda e: np.mean([r["test_rel_l2"] for r in finished
                                                            if r["estimator"] == e] or [np.inf]))[:1]
        return [("x2", e, 32, 30000.0, s) for e in ["bptt", *best] for s in range(3)]
    if part == "x2-t128":
        return [("x2", "bptt", 128, 30000.0, 0)]
    if part == "x2-lif":
        return [("x2", e, 32, 9000.0, s, 0.9) for e in ("bptt", "rate-jacobian") for s in range(3)]
    if part in ("ricker", "separable-2d"):
        return [(part, e, 32, 9000.0, s) for s in range(3) for e in ESTIMATORS]
    if part == "deeponet":
        return [("deeponet-poisson", e, 128, 6000.0, s) for s in range(3) for e in ("bptt", "rate-jacobian")] + [
            ("deeponet-poisson", e, 128, 6000.0, 0)
            for e in ("activity", "activity-rate", "rfg-layer", "activity-rate-layer")]
    if part == "deeponet-rest":
        return [("deeponet-poisson", e, 128, 6000.0, 0) for e in ("rfg-global", "weight-fd", "activity-layer")]
    return []


def _key(row: dict) -> tuple:
    key = (row["part"], row["task"], row["estimator"], row["timesteps"], row["budget_fpe"], row["seed"])
    return key + ((row["leak"],) if row.get("leak", 1.0) != 1.0 else ())


def _job(args):
    part, spec = args
    row = run(*spec)
    row["part"] = part
    return row


def cosine_rows() -> list[dict]:
    """Cosine to the BPTT gradient per estimator (x², seed 0): at initialisation, and at the network BPTT
    trained for 3,000 FPE (where a biased estimator's bias shows: units saturate, rates are not linear)."""
    torch.set_num_threads(1)
    task = load_task("x2")
    surrogate = Surrogate("gaussian", task.sigma)
    trained = train_network("x2", estimator="bptt", budget_fpe=3000.0, timesteps=32).result.model
    states = {"": build_model(task, task.initial(32), surrogate), "_trained": trained}
    rows = {name: {"part": "cosine", "estimator": name} for name in ESTIMATORS}
    for suffix, model in states.items():
        objective = Objective(model, *task.train)
        exact = torch.cat([g.flatten() for g in estimate("bptt", objective, rng=torch.Generator()).gradient])
        for name in ESTIMATORS:
            rng = torch.Generator().manual_seed(0)
            draws = torch.stack([torch.cat([g.flatten() for g in estimate(name, objective, rng=rng).gradient])
                                 for _ in range(64 if name not in NOISE_FREE else 1)])
            cos = draws @ exact / draws.norm(dim=1) / exact.norm()
            mean = draws.mean(0)
            rows[name].update({f"cosine_mean{suffix}": float(cos.mean()),
                               f"cosine_of_mean_64{suffix}": float(mean @ exact / mean.norm() / exact.norm())})
    return list(rows.values())


def step_rows() -> list[dict]:
    """Step time (median of 5 rounds, the estimators interleaved in each) and peak memory per estimator
    (x², seed 0, at initialisation, K = 1) at T = 32 and 128."""
    torch.set_num_threads(1)
    task = load_task("x2")
    rows = []
    for T in (32, 128):
        model = build_model(task, task.initial(T), Surrogate("gaussian", task.sigma))
        objective = Objective(model, *task.train)
        times = {name: [] for name in ESTIMATORS}
        for _ in range(5):                      # interleaved: the estimators share the machine's noise
            for name in ESTIMATORS:
                started = time.perf_counter()
                e = estimate(name, objective, rng=torch.Generator().manual_seed(0))
                times[name].append(time.perf_counter() - started)
                times.setdefault(name + "/cost", e.cost_fpe)
        for name in ESTIMATORS:
            rows.append({"part": "step", "estimator": name, "timesteps": T,
                         "step_s": float(np.median(times[name])), "cost_fpe": times[name + "/cost"],
                         "step_vs_bptt": float(np.median(times[name]) / np.median(times["bptt"])),
                         "peak_rss_mb": _peak_memory(name, T)})
    return rows


def _peak_memory(name: str, timesteps: int) -> float:
    """Peak resident memory (MB) of a fresh process during three steps of ``name`` on x² at T, above its
    resident memory before them (imports, data, model, one warm-up step): the kernel's high-water mark
    VmHWM is reset first (``/proc/self/clear_refs``)."""
    code = (f"import torch; torch.set_num_threads(1)\n"
            f"from onnx2snn.training.tasks import load_task\n"
            f"from onnx2snn.training.trainer import build_model, default_learning_rate\n"
            f"from onnx2snn.training.surrogate import Surrogate\n"
            f"from onnx2snn.training.estimators import estimate, Objective\n"
            f"t = load_task('x2'); m = build_model(t, t.initial({timesteps}), Surrogate('gaussian', 0.5))\n"
            f"o = Objective(m, *t.train)\n"
            f"estimate('rfg-global', o, rng=torch.Generator())\n"    # forward-AD machinery loaded
            f"status = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])\n"
            f"open('/proc/self/clear_refs', 'w').write('5')\n"
            f"base = status('VmRSS')\n"
            f"[estimate({name!r}, o, rng=torch.Generator()) for _ in range(3)]\n"
            f"print((status('VmHWM') - base) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")


ANN_TASKS = [("x2", 9000.0), ("x2", 30000.0), ("ricker", 9000.0), ("separable-2d", 9000.0),
             ("deeponet-poisson", 6000.0)]
# the best of 1e-3, 3e-3, 1e-2 (3 seeds): x² 9,000 FPE 0.50 / 0.33 / 0.11 %, DeepONet 7.8 / 5.0 / 4.1 %
ANN_LEARNING_RATE = 1e-2


def ann_rows() -> list[dict]:
    """The ANN baseline: the task's widths as a tanh MLP (a DeepONet: two, multiplied like the SNN's),
    trained by back-propagation with Adam (η = ``ANN_LEARNING_RATE``, the trainer's cosine decay to η/10)
    for BPTT's number of steps at the budget (budget / 3), on the same minibatches; seeds 0-2."""
    torch.set_num_threads(1)
    rows = []
    for name, budget in ANN_TASKS:
        task = load_task(name)
        for seed in range(3):
            torch.manual_seed(seed)
            nets = [_tanh_mlp(w) for w in (task.widths if task.kind == "product" else [task.widths])]
            parameters = [q for net in nets for q in net.parameters()]
            optimiser = torch.optim.Adam(parameters, lr=ANN_LEARNING_RATE)
            batches = task.batches(np.random.default_rng(seed))
            steps = int(budget / 3)
            started = time.perf_counter()
            for step in range(steps):
                inputs, target = next(batches)
                for group in optimiser.param_groups:
                    group["lr"] = decayed(ANN_LEARNING_RATE, step / steps)
                optimiser.zero_grad()
                ((_ann_output(nets, inputs) - target) ** 2).mean().backward()
                optimiser.step()
            with torch.no_grad():
                error = task.test_error(_ann_output(nets, task.test[0]))
            rows.append({"part": "ann", "task": name, "budget_fpe": budget, "seed": seed, "steps": steps,
                         "learning_rate": ANN_LEARNING_RATE, "test_rel_l2": error,
                         "train_s": time.perf_counter() - started})
    return rows


def _tanh_mlp(widths: list[int]) -> torch.nn.Sequential:
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(n_in, n_out, dtype=torch.float64), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers[:-1])


def _ann_output(nets, inputs) -> torch.Tensor:
    if len(nets) == 1:
        return nets[0](inputs)
    return nets[0](inputs[0]) @ nets[1](inputs[1]).T


def calibration_rows() -> list[dict]:
    import onnx2snn
    rows = []
    model = ROOT / "models" / "poisson1d.onnx"
    for label, calibration in (("advanced", "advanced"), ("advanced+forward", "advanced+forward"),
                               ("advanced+finetune (back-propagation)", "advanced+finetune")):
        started = time.perf_counter()
        report = onnx2snn.convert(model, pieces=1, calibration=calibration, timesteps=32,
                                  validation_points=16384).report
        rows.append({"part": "calibration", "model": model.stem, "calibration": label, "timesteps": 32,
                     "rel_l2_snn_vs_ann": report["validation"]["rel_l2_snn_vs_ann"],
                     "wall_s": time.perf_counter() - started})
    return rows


def write_report(rows: list[dict]) -> None:
    lines = ["# Forward-only training against BPTT", "",
             "`OMP_NUM_THREADS=1 python benchmarks/forward_gradient.py`; test error = relative L2 against the exact",
             "solution on the task's test points (DeepONet: mean over 200 test functions of each one's relative",
             "L2).  Budgets in forward-pass equivalents (FPE) of one minibatch (`estimators.py` counts them;",
             "FPE/step: the count when the row was trained, the step-cost table: the current one).",
             "Learning rates: `trainer.LEARNING_RATES`.", ""]
    trained = [r for r in rows if r["part"] not in ("cosine", "step", "calibration", "ann")]
    groups: dict[tuple, list[dict]] = {}
    for r in trained:
        task = r["task"] if r.get("leak", 1.0) == 1.0 else f"{r['task']} (LIF, λ = {r['leak']:g})"
        groups.setdefault((task, r["timesteps"], r["budget_fpe"], r["estimator"]), []).append(r)
    lines += ["| task | T | budget (FPE) | estimator | η | seeds | test error mean | worst | steps | FPE/step | "
              "train s | spikes/sample |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (task, T, budget, est), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2],
                                                                            ESTIMATORS.index(kv[0][3]))):
        errors = [r["test_rel_l2"] for r in rs]
        spikes = [r["spikes_per_sample"] for r in rs if "spikes_per_sample" in r]
        lines.append(f"| {task} | {T} | {budget:,.0f} | {est} | {fmt(rs[0].get('learning_rate'), 1)} | {len(rs)} | "
                     f"{100 * np.mean(errors):.2f} % | {100 * max(errors):.2f} % | "
                     f"{np.mean([r['iterations'] for r in rs]):,.0f} | "
                     f"{np.mean([r['curve'][-1]['fpe'] / r['iterations'] for r in rs]):.2f} | "
                     f"{np.mean([r['train_s'] for r in rs]):.0f} | "
                     f"{f'{np.mean(spikes):,.0f}' if spikes else '—'} |")
    ann = [r for r in rows if r["part"] == "ann"]
    if ann:
        lines += ["", "The ANN baseline: the same widths with tanh, back-propagation with Adam (η = "
                  f"{ann[0]['learning_rate']:g}, the same decay) for BPTT's number of steps at the budget:", "",
                  "| task | budget (FPE) | steps | seeds | test error mean | worst |", "|---|---|---|---|---|---|"]
        for task, budget in dict.fromkeys((r["task"], r["budget_fpe"]) for r in ann):
            rs = [r for r in ann if r["task"] == task and r["budget_fpe"] == budget]
            errors = [r["test_rel_l2"] for r in rs]
            lines.append(f"| {task} | {budget:,.0f} | {rs[0]['steps']:,} | {len(rs)} | {100 * np.mean(errors):.2f} % | "
                         f"{100 * max(errors):.2f} % |")
    cosine = [r for r in rows if r["part"] == "cosine"]
    if cosine:
        lines += ["", "Cosine between estimates and the BPTT gradient (x², T = 32, 64 draws; at initialisation "
                  "and at the network BPTT trained for 3,000 FPE):", "",
                  "| estimator | one estimate, init | 64-draw mean, init | one estimate, trained | "
                  "64-draw mean, trained |", "|---|---|---|---|---|"]
        lines += [f"| {r['estimator']} | {r['cosine_mean']:.3f} | {r['cosine_of_mean_64']:.3f} | "
                  f"{_cosine(r.get('cosine_mean_trained'))} | {_cosine(r.get('cosine_of_mean_64_trained'))} |"
                  for r in cosine]
    steps = [r for r in rows if r["part"] == "step"]
    if steps:
        lines += ["", "Step cost (x², one estimate, K = 1; median of 5 interleaved; peak memory of 3 steps in a "
                  "fresh process):", "",
                  "| estimator | T | FPE | step ms | × BPTT step | peak memory MB |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['estimator']} | {r['timesteps']} | {r['cost_fpe']:.2f} | {1e3 * r['step_s']:.1f} | "
                  f"{r['step_vs_bptt']:.2f} | {fmt(r['peak_rss_mb'], 1)} |" for r in steps]
    calibration = [r for r in rows if r["part"] == "calibration"]
    if calibration:
        lines += ["", "`--calibration forward` (poisson1d, one neuron per unit, T = 32, 16,384 fresh points):", "",
                  "| calibration | rel. L2 vs ANN | wall s |", "|---|---|---|"]
        lines += [f"| {r['calibration']} | {r['rel_l2_snn_vs_ann']:.2e} | {r['wall_s']:.0f} |" for r in calibration]
    (RESULTS / "forward_gradient.md").write_text("\n".join(lines) + "\n")
    _plot(trained)


def _cosine(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _plot(rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, budget in zip(axes, (9000.0, 30000.0)):
        for r in rows:
            if r["task"] == "x2" and r["timesteps"] == 32 and r["budget_fpe"] == budget and r["seed"] == 0 \
                    and r.get("leak", 1.0) == 1.0:
                ax.loglog([c["fpe"] for c in r["curve"]], [c["test_rel_l2"] for c in r["curve"]], label=r["estimator"])
        ax.set_xlabel("forward-pass equivalents")
        ax.set_ylabel("test relative L2")
        ax.set_title(f"x², 1-64×4-1, T = 32, budget {budget:,.0f} FPE (seed 0)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "forward_gradient.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--redo", nargs="*", default=[], help="parts to measure again (their rows are dropped)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.fresh and OUT.exists():
        OUT.unlink()
    if args.redo:
        OUT.write_text("".join(json.dumps(r) + "\n" for r in load_rows(OUT) if r["part"] not in args.redo))
    parts = args.only or ["cosine", "step", "x2", "deeponet", "x2-30k", "x2-t128", "ricker", "separable-2d",
                          "deeponet-rest", "x2-lif", "ann", "calibration"]
    measures = {"cosine": cosine_rows, "step": step_rows, "calibration": calibration_rows, "ann": ann_rows}
    if not args.report_only:
        for part in parts:
            done = load_rows(OUT)
            if part in measures:
                if not any(r["part"] == part for r in done):
                    for row in measures[part]():
                        append(OUT, row)
                continue
            have = {_key(r) for r in done if "estimator" in r and "task" in r}
            jobs = [(part, spec) for spec in plan(part, done) if (part, *spec) not in have]
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                for row in pool.imap_unordered(_job, jobs):
                    append(OUT, row)
                    print(f"{part}: {row['task']} {row['estimator']} T={row['timesteps']} seed {row['seed']}: "
                          f"{100 * row['test_rel_l2']:.2f} % in {row['train_s']:.0f} s", flush=True)
    write_report(load_rows(OUT))


if __name__ == "__main__":
    main()
