"""Train the 1-D Poisson PINN and export ``models/poisson1d.onnx``.

Problem: ``-u'' = pi^2 sin(pi x)`` on ``[-1, 1]``, ``u(-1) = u(1) = 0``; exact ``u = sin(pi x)``.
Network: ``1 -> 4 x 100 tanh -> 1``.  Loss: mean squared PDE residual (``u''`` by autograd) on
collocation points, scaled by ``1/pi^4`` so that it is of the order of ``u``, plus the squared
boundary values.  Adam on freshly drawn random points, then L-BFGS on a fixed Chebyshev-Gauss-Lobatto
grid.  Seeded, float64, one thread.

    OMP_NUM_THREADS=1 python models/train_poisson1d.py
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pinn_common import (  # noqa: E402
    MLP,
    Log,
    describe_onnx,
    export_onnx,
    grad,
    n_params,
    onnx_predict,
    rel_l2,
    seed_everything,
    train,
)
from onnx2snn.exact import poisson1d  # noqa: E402

SEED = 0
WIDTH, DEPTH = 100, 4
N_COLLOC = 512
ADAM_STEPS, ADAM_LR = 3000, 1e-3
LBFGS_ITERS = 3000
OUT = Path(__file__).resolve().parent / "poisson1d.onnx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=OUT, help=f"default {OUT}")
    args = ap.parse_args()
    out = args.output

    log = Log()
    seed_everything(SEED)
    model = MLP(1, WIDTH, DEPTH, 1)
    log(f"poisson1d: 1 -> {DEPTH}x{WIDTH} tanh -> 1, {n_params(model)} parameters, torch {torch.__version__}")

    gen = torch.Generator().manual_seed(SEED)
    state = {"x": None}
    xb = torch.tensor([[-1.0], [1.0]])
    x_eval = np.linspace(-1.0, 1.0, 2048)[:, None]
    u_eval = poisson1d(x_eval)

    def resample(_step: int = 0) -> None:
        state["x"] = (2 * torch.rand(N_COLLOC, 1, generator=gen) - 1).requires_grad_(True)

    def fixed_grid() -> None:  # Chebyshev-Gauss-Lobatto: denser near the boundaries
        k = torch.arange(2 * N_COLLOC, dtype=torch.float64)
        state["x"] = (-torch.cos(math.pi * k / (2 * N_COLLOC - 1)))[:, None].requires_grad_(True)

    def loss_fn() -> torch.Tensor:
        x = state["x"]
        u = model(x)
        u_xx = grad(grad(u, x), x)
        res = (u_xx + math.pi**2 * torch.sin(math.pi * x)) / math.pi**2
        return res.pow(2).mean() + model(xb).pow(2).mean()

    def monitor() -> str:
        with torch.no_grad():
            u = model(torch.from_numpy(x_eval)).numpy()
        return f"rel_l2 {rel_l2(u, u_eval):.2e}"

    resample()
    hist = train(
        model,
        loss_fn,
        adam_steps=ADAM_STEPS,
        adam_lr=ADAM_LR,
        adam_milestones=(1500, 2500),
        resample=resample,
        resample_every=1,
        before_lbfgs=fixed_grid,
        lbfgs_iters=LBFGS_ITERS,
        monitor=monitor,
        log=log,
        log_every=500,
    )
    train_s = hist["train_s"]

    proto = export_onnx(model, out, in_features=1, domain="x=-1:1", problem="poisson1d")
    log(f"exported {out}: {describe_onnx(proto)}")
    err_onnx = rel_l2(onnx_predict(out, x_eval), u_eval)
    err_torch = float(monitor().split()[-1])
    print(f"parameters            {n_params(model)}")
    print(f"final loss            {hist['final_loss']:.3e}  (L-BFGS iterations {hist['lbfgs_iters']})")
    print(f"rel L2 vs exact, torch float64, 2048 uniform points: {err_torch:.3e}")
    print(f"rel L2 vs exact, ONNX float32,  2048 uniform points: {err_onnx:.3e}")
    print(f"training time {train_s:.1f} s, total wall time {log.elapsed():.1f} s")
    if err_onnx > 1e-3:
        raise SystemExit(f"poisson1d: relative L2 {err_onnx:.2e} exceeds the target 1e-3")


if __name__ == "__main__":
    main()
