"""Training cost of a plain PINN against a separable PINN (SPINN), measured side by side in one process.

The paper reports that separable PINNs train 1.7x (Burgers) and 60x (Beltrami) faster.  Both networks get
the same PDE residual on the same number of collocation points, and one training step (forward, residual
with its derivatives, backward, Adam update) is timed for each, float64, one thread, as the training
scripts in ``models/`` run:

* Burgers ``u_t + u u_x = ν u_xx``: plain ``2 → 4×40 tanh → 1`` (``models/burgers.onnx``) on a list of
  N = nx·nt points, derivatives once by nested reverse-mode autograd (as ``train_burgers.py`` trains)
  and once by forward-mode propagation (``pinn_common.tanh_mlp_jets``, the cheaper one on a CPU);
  separable ``u[i, j] = Σ_r f_x(x_i)_r f_t(t_j)_r``, per axis ``1 → 3×40 tanh → 32``
  (``models/spinn_burgers.onnx``) on the nx × nt grid, derivatives of the 1-D networks on nx and nt
  points only.
* Beltrami (3-D unsteady Navier–Stokes, fields u, v, w, p): plain ``4 → 4×50 tanh → 4`` on the
  n³·m grid points as a list (forward-mode derivatives); separable per axis ``1 → 2×50 tanh → 4×16``
  (``models/spinn_beltrami.onnx``) on the n × n × n × m grid.

    ratio = (seconds per plain step) / (seconds per separable step)

The ratio is per step at equal collocation points; a whole training run differs by schedule (the paper
trains both for the same number of steps, so its ratio is the same quantity).  Results go to
``benchmarks/results/training_time.json`` and ``training_time.md``.

    OMP_NUM_THREADS=1 python benchmarks/training_time.py [--steps 10]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from pinn_common import MLP, grad, n_params, seed_everything, tanh_mlp_jets  # noqa: E402
from train_spinn_beltrami import SeparableBeltrami, ns_residuals, spinn_jets  # noqa: E402
from train_spinn_burgers import SeparableBurgers  # noqa: E402

from onnx2snn.exact import BURGERS_NU  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PAPER_RATIO = {"burgers": 1.7, "beltrami": 60.0}
BURGERS_GRIDS = ((256, 100), (768, 100))        # the evaluation grid; the SPINN's training grid
BELTRAMI_GRIDS = ((12, 6), (16, 8))             # train_spinn_beltrami.py's Adam and L-BFGS grids (n³ × m)


def seconds_per_step(model: torch.nn.Module, loss: Callable[[], torch.Tensor], steps: int) -> float:
    """Mean wall time of one Adam step (after two warm-up steps)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def burgers_residual(u, u_x, u_xx, u_t) -> torch.Tensor:
    return (u_t + u * u_x - BURGERS_NU * u_xx).pow(2).mean()


def burgers_losses(plain: MLP, spinn: SeparableBurgers, nx: int, nt: int, gen: torch.Generator):
    """Residual losses of the three variants on nx × nt collocation points (the same points)."""
    x, t = 2 * torch.rand(nx, 1, generator=gen) - 1, torch.rand(nt, 1, generator=gen)
    points = torch.stack(torch.meshgrid(x[:, 0], t[:, 0], indexing="ij"), dim=-1).reshape(-1, 2)

    def plain_autograd() -> torch.Tensor:
        xt = points.detach().requires_grad_(True)
        u = plain(xt)
        du = grad(u, xt)
        return burgers_residual(u, du[:, :1], grad(du[:, :1], xt)[:, :1], du[:, 1:])

    def plain_forward_mode() -> torch.Tensor:
        u, jets = tanh_mlp_jets(plain, points, [0, 1])
        return burgers_residual(u, jets[0][0], jets[0][1], jets[1][0])

    def separable() -> torch.Tensor:
        fx, jx = tanh_mlp_jets(spinn.fx, x, [0])
        ft, jt = tanh_mlp_jets(spinn.ft, 2 * t - 1, [0], [2.0])
        return burgers_residual(fx @ ft.T, jx[0][0] @ ft.T, jx[0][1] @ ft.T, fx @ jt[0][0].T)

    return plain_autograd, plain_forward_mode, separable


def beltrami_losses(plain: MLP, spinn: SeparableBeltrami, n: int, m: int, gen: torch.Generator):
    """Navier–Stokes residual losses of the plain and separable networks on the n³ × m grid."""
    axes = [2 * torch.rand(n, 1, generator=gen) - 1 for _ in range(3)] + [torch.rand(m, 1, generator=gen)]
    points = torch.stack(torch.meshgrid(*(a[:, 0] for a in axes), indexing="ij"), dim=-1).reshape(-1, 4)

    def plain_forward_mode() -> torch.Tensor:
        xi = torch.cat([points[:, :3], 2 * points[:, 3:] - 1], dim=1)
        u, jets = tanh_mlp_jets(plain, xi, [0, 1, 2, 3], [1.0, 1.0, 1.0, 2.0])
        grads = [jets[k][0].T for k in range(4)]
        laplacian = (jets[0][1] + jets[1][1] + jets[2][1]).T
        return sum(r.pow(2).mean() for r in ns_residuals(u.T, grads, laplacian))

    def separable() -> torch.Tensor:
        return sum(r.pow(2).mean() for r in ns_residuals(*spinn_jets(spinn, axes)))

    return plain_forward_mode, separable


def measure(steps: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    plain, spinn = MLP(2, 40, 4, 1), SeparableBurgers(40, 3, 32)
    for nx, nt in BURGERS_GRIDS:
        autograd_loss, forward_loss, separable_loss = burgers_losses(plain, spinn, nx, nt, gen)
        t_sep = seconds_per_step(spinn, separable_loss, steps)
        t_fwd = seconds_per_step(plain, forward_loss, steps)
        t_auto = seconds_per_step(plain, autograd_loss, steps)
        rows.append(_row("burgers", f"{nx} × {nt}", nx * nt, plain, spinn, t_auto, t_fwd, t_sep))
    plain, spinn = MLP(4, 50, 4, 4), SeparableBeltrami(50, 2, 16)
    for n, m in BELTRAMI_GRIDS:
        forward_loss, separable_loss = beltrami_losses(plain, spinn, n, m, gen)
        t_sep = seconds_per_step(spinn, separable_loss, steps)
        t_fwd = seconds_per_step(plain, forward_loss, max(2, steps // 4))
        rows.append(_row("beltrami", f"{n}³ × {m}", n ** 3 * m, plain, spinn, None, t_fwd, t_sep))
    return rows


def _row(problem, grid, points, plain, spinn, t_autograd, t_forward, t_separable) -> dict:
    best_plain = min(t for t in (t_autograd, t_forward) if t is not None)
    return {"problem": problem, "grid": grid, "points": points, "plain_parameters": n_params(plain),
            "separable_parameters": n_params(spinn), "plain_autograd_s": t_autograd,
            "plain_forward_mode_s": t_forward, "separable_s": t_separable,
            "ratio": best_plain / t_separable, "paper_ratio": PAPER_RATIO[problem]}


def markdown(rows: list[dict], header: str) -> str:
    ms = lambda s: "—" if s is None else f"{s * 1e3:.1f}"
    lines = [header, "",
             "| problem | collocation grid | points | plain params | separable params | plain step, autograd (ms) "
             "| plain step, forward mode (ms) | separable step (ms) | ratio (fastest plain / separable) "
             "| paper |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['grid']} | {r['points']:,} | {r['plain_parameters']:,} | "
                     f"{r['separable_parameters']:,} | {ms(r['plain_autograd_s'])} | {ms(r['plain_forward_mode_s'])} | "
                     f"{ms(r['separable_s'])} | **{r['ratio']:.1f}×** | {r['paper_ratio']:g}× |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed Adam steps per network and grid")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    seed_everything(0)
    rows = measure(args.steps)
    header = (f"Training step time, plain PINN vs separable PINN (torch {torch.__version__}, float64, one thread, "
              f"{platform.processor() or platform.machine()}; `benchmarks/training_time.py`, one process, "
              f"{args.steps} timed steps each)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training_time.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "training_time.md").write_text(markdown(rows, header))
    print(markdown(rows, header))


if __name__ == "__main__":
    main()
