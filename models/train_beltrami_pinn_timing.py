"""Time training steps of the separable Beltrami PINN against a plain (non-separable) PINN.

For the claim that a separable PINN trains faster: both networks get the same loss (the mean squared
Navier-Stokes momentum and continuity residuals of ``train_spinn_beltrami.ns_residuals``) on the same
number of collocation points, and the script times ``--steps`` Adam steps of each (forward, residual,
backward, update) on one CPU thread, in float64 like the training script:

* separable: ``train_spinn_beltrami.SeparableBeltrami`` (per axis ``1 -> 2 x 50 tanh -> 4 x 16``) on an
  ``n^3 x m`` grid; derivatives of the four 1-D networks on ``n`` or ``m`` points, then einsums;
* plain: ``4 -> depth x width tanh -> 4`` (default ``4 x 50``) on the ``n^3 m`` grid points as a list;
  value, first and second derivatives along x, y, z, t by the same forward-mode propagation
  (``pinn_common.tanh_mlp_jets``), which is cheaper on a CPU than nested reverse-mode autograd, so the
  plain timing is a favourable one.

Grids: the Adam grid (``12^3 x 6 = 10 368`` points) and the L-BFGS grid (``16^3 x 8 = 32 768``) of
``train_spinn_beltrami.py``.  Prints seconds per step, the ratio, and a lower-bound estimate of the
plain PINN's time for the separable script's schedule (its Adam steps on the Adam grid plus one
loss-and-gradient evaluation per L-BFGS iteration on the L-BFGS grid; L-BFGS takes about 1.1).

    OMP_NUM_THREADS=1 python models/train_beltrami_pinn_timing.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from pinn_common import MLP, n_params, seed_everything, tanh_mlp_jets  # noqa: E402
from train_spinn_beltrami import (  # noqa: E402
    ADAM_STEPS,
    DEPTH,
    LBFGS_ITERS,
    N_SPACE,
    N_SPACE_LB,
    N_TIME,
    N_TIME_LB,
    RANK,
    WIDTH,
    SeparableBeltrami,
    ns_residuals,
    spinn_jets,
)


def plain_jets(model: MLP, pts: torch.Tensor):
    """Fields ``[4, N]``, their derivatives along x, y, z, t and spatial Laplacian for a point list."""
    xi = torch.cat([pts[:, :3], 2 * pts[:, 3:] - 1], dim=1)  # t normalised as in the separable script
    u, jets = tanh_mlp_jets(model, xi, [0, 1, 2, 3], [1.0, 1.0, 1.0, 2.0])
    grads = [jets[k][0].T for k in range(4)]
    lap = (jets[0][1] + jets[1][1] + jets[2][1]).T
    return u.T, grads, lap


def time_steps(model: torch.nn.Module, loss_fn, steps: int) -> float:
    """Seconds per Adam step (after 3 warm-up steps)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed Adam steps per network and grid")
    ap.add_argument("--width", type=int, default=50, help="plain PINN width")
    ap.add_argument("--depth", type=int, default=4, help="plain PINN depth")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seed_everything(0)
    spinn = SeparableBeltrami(WIDTH, DEPTH, RANK)
    plain = MLP(4, args.width, args.depth, 4)
    print(
        f"torch {torch.__version__}, {torch.get_default_dtype()}, {torch.get_num_threads()} thread; "
        f"separable {n_params(spinn)} parameters (per axis 1 -> {DEPTH}x{WIDTH} -> 4x{RANK}), "
        f"plain 4 -> {args.depth}x{args.width} -> 4 {n_params(plain)} parameters"
    )
    gen = torch.Generator().manual_seed(0)
    per_step = {}
    for label, n, m in (("Adam", N_SPACE, N_TIME), ("L-BFGS", N_SPACE_LB, N_TIME_LB)):
        axes = [2 * torch.rand(n, 1, generator=gen) - 1 for _ in range(3)] + [torch.rand(m, 1, generator=gen)]
        grid = torch.stack(torch.meshgrid(*(a[:, 0] for a in axes), indexing="ij"), dim=-1).reshape(-1, 4)

        def spinn_loss() -> torch.Tensor:
            return sum(r.pow(2).mean() for r in ns_residuals(*spinn_jets(spinn, axes)))

        def plain_loss() -> torch.Tensor:
            return sum(r.pow(2).mean() for r in ns_residuals(*plain_jets(plain, grid)))

        t_s = time_steps(spinn, spinn_loss, args.steps)
        t_p = time_steps(plain, plain_loss, max(3, args.steps // 4))
        per_step[label] = (t_s, t_p)
        print(
            f"{label} grid {n}^3 x {m} = {len(grid)} points: separable {t_s * 1e3:.1f} ms/step, "
            f"plain {t_p * 1e3:.1f} ms/step, ratio {t_p / t_s:.1f}x"
        )
    est = {
        k: ADAM_STEPS * per_step["Adam"][i] + LBFGS_ITERS * per_step["L-BFGS"][i]
        for i, k in enumerate(("separable", "plain"))
    }
    print(
        f"schedule of train_spinn_beltrami.py ({ADAM_STEPS} Adam steps + {LBFGS_ITERS} L-BFGS evaluations, "
        f"residual only): separable ~{est['separable']:.0f} s, plain ~{est['plain']:.0f} s "
        f"({est['plain'] / 60:.0f} min, {est['plain'] / est['separable']:.1f}x)"
    )


if __name__ == "__main__":
    main()
