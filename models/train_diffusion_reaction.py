"""Train the diffusion-reaction PINN and export ``models/diffusion_reaction.onnx``.

Problem: ``u_t = u_xx + e^{-t} (3/2 sin 2x + 8/3 sin 3x + 15/4 sin 4x + 63/8 sin 8x)`` on
``x in [-pi, pi]``, ``t in [0, 1]``; initial and boundary values from the exact solution
``u = e^{-t} (sin x + sin 2x/2 + sin 3x/3 + sin 4x/4 + sin 8x/8)`` (``onnx2snn.exact``), which gives
``u(+-pi, t) = 0``.
Network: one input ``x`` of 2 features ``(x, t)``, ``2 -> 4 x 100 tanh -> 1``.  Training feeds the
inputs normalised to ``[-1, 1]`` (``x / pi``, ``2 t - 1``); the normalisation is folded into the first
layer for the export, which stays a plain chain of ``Gemm`` and ``Tanh``.
Loss (soft constraints): mean squared PDE residual (derivatives by autograd, scaled by 1/8, the size of
the largest source term) + initial-condition and boundary mean squared errors.  Adam on collocation
points redrawn every step, then L-BFGS on a fixed set.  Seeded, float64, one thread.

    OMP_NUM_THREADS=1 python models/train_diffusion_reaction.py
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
    fold_input_affine,
    grad,
    n_params,
    onnx_predict,
    rel_l2,
    seed_everything,
    train,
)
from onnx2snn.exact import diffusion_reaction  # noqa: E402

SEED = 0
WIDTH, DEPTH = 100, 4
N_COLLOC, N_IC, N_BC = 2000, 256, 128
ADAM_STEPS, ADAM_LR = 2000, 1e-3
LBFGS_ITERS = 2500
RES_SCALE = 8.0
LO, HI = (-math.pi, 0.0), (math.pi, 1.0)
TARGET = 1e-2
OUT = Path(__file__).resolve().parent / "diffusion_reaction.onnx"


def eval_points() -> np.ndarray:
    """256 x 101 grid: x = linspace(-pi, pi, 256), t = linspace(0, 1, 101)."""
    x, t = np.meshgrid(np.linspace(-math.pi, math.pi, 256), np.linspace(0, 1, 101), indexing="ij")
    return np.stack([x.ravel(), t.ravel()], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--colloc", type=int, default=N_COLLOC, help="collocation points")
    ap.add_argument("--adam", type=int, default=ADAM_STEPS, help="Adam steps")
    ap.add_argument("--lbfgs", type=int, default=LBFGS_ITERS, help="L-BFGS iterations")
    ap.add_argument("--width", type=int, default=WIDTH)
    ap.add_argument("--depth", type=int, default=DEPTH)
    ap.add_argument("-o", "--output", type=Path, default=OUT, help=f"default {OUT}")
    args = ap.parse_args()

    log = Log()
    seed_everything(SEED)
    model = MLP(2, args.width, args.depth, 1)
    log(
        f"diffusion_reaction: 2 -> {args.depth}x{args.width} tanh -> 1, {n_params(model)} parameters, "
        f"torch {torch.__version__}, {args.colloc} collocation points"
    )
    gen = torch.Generator().manual_seed(SEED)
    lo, hi = torch.tensor(LO), torch.tensor(HI)
    scale = 2.0 / (hi - lo)  # d xi / d x per feature

    def norm(p: torch.Tensor) -> torch.Tensor:
        return (2 * p - (lo + hi)) / (hi - lo)

    def rand_xi(n: int) -> torch.Tensor:  # uniform in the normalised box [-1, 1]^2
        return 2 * torch.rand(n, 2, generator=gen) - 1

    x_ic = torch.linspace(-math.pi, math.pi, N_IC)
    p_ic = torch.stack([x_ic, torch.zeros_like(x_ic)], 1)
    u_ic = torch.from_numpy(diffusion_reaction(p_ic.numpy()))
    t_bc = torch.linspace(0, 1, N_BC)
    p_bc = torch.cat([torch.stack([torch.full_like(t_bc, v), t_bc], 1) for v in (-math.pi, math.pi)])
    u_bc = torch.from_numpy(diffusion_reaction(p_bc.numpy()))
    xi_ic, xi_bc = norm(p_ic), norm(p_bc)
    state = {"xi": rand_xi(args.colloc)}

    pts = eval_points()
    u_ref = diffusion_reaction(pts)
    xi_eval = norm(torch.from_numpy(pts))

    def source(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = 1.5 * torch.sin(2 * x) + 8 / 3 * torch.sin(3 * x) + 3.75 * torch.sin(4 * x) + 63 / 8 * torch.sin(8 * x)
        return torch.exp(-t) * s

    def loss_fn() -> torch.Tensor:
        xi = state["xi"].requires_grad_(True)
        u = model(xi)
        du = grad(u, xi)
        u_t = du[:, 1:] * scale[1]
        u_xx = grad(du[:, :1], xi)[:, :1] * scale[0] ** 2
        x = xi[:, :1].detach() / scale[0] + (lo[0] + hi[0]) / 2
        t = xi[:, 1:].detach() / scale[1] + (lo[1] + hi[1]) / 2
        res = (u_t - u_xx - source(x, t)) / RES_SCALE
        return res.pow(2).mean() + (model(xi_ic) - u_ic).pow(2).mean() + (model(xi_bc) - u_bc).pow(2).mean()

    def resample(_step: int = 0) -> None:
        state["xi"] = rand_xi(args.colloc)

    def fixed_set() -> None:
        state["xi"] = rand_xi(2 * args.colloc)

    def monitor() -> str:
        with torch.no_grad():
            u = model(xi_eval).numpy()
        return f"rel_l2 {rel_l2(u, u_ref):.2e}"

    hist = train(
        model,
        loss_fn,
        adam_steps=args.adam,
        adam_lr=ADAM_LR,
        adam_milestones=(args.adam // 2, args.adam * 5 // 6),
        resample=resample,
        resample_every=1,
        before_lbfgs=fixed_set,
        lbfgs_iters=args.lbfgs,
        lbfgs_chunk=500,
        monitor=monitor,
        log=log,
        log_every=500,
    )
    train_s = hist["train_s"]
    err_torch = float(monitor().split()[-1])

    raw = fold_input_affine(model, LO, HI)  # plain MLP of (x, t)
    with torch.no_grad():
        fold_err = (raw(torch.from_numpy(pts)) - model(xi_eval)).abs().max().item()
    out = args.output
    proto = export_onnx(
        raw, out, in_features=2, domain="x=-3.14159265:3.14159265,0:1", problem="diffusion_reaction", atol=1e-5
    )
    log(f"exported {out}: {describe_onnx(proto)}")
    err_onnx = rel_l2(onnx_predict(out, pts), u_ref)
    rng = np.random.default_rng(1)
    pts_rand = np.stack([rng.uniform(-math.pi, math.pi, 20000), rng.uniform(0, 1, 20000)], 1)
    err_rand = rel_l2(onnx_predict(out, pts_rand), diffusion_reaction(pts_rand))
    print(f"parameters            {n_params(model)}")
    print(f"final loss            {hist['final_loss']:.3e}  (L-BFGS iterations {hist['lbfgs_iters']})")
    print(f"input-normalisation fold: max |difference| {fold_err:.1e}")
    print(f"rel L2 vs exact, torch float64, 256x101 grid: {err_torch:.3e}")
    print(f"rel L2 vs exact, ONNX float32,  256x101 grid: {err_onnx:.3e}")
    print(f"rel L2 vs exact, ONNX float32,  20000 random points: {err_rand:.3e}")
    print(f"training time {train_s:.1f} s, total wall time {log.elapsed():.1f} s")
    if err_onnx > TARGET:
        raise SystemExit(f"diffusion_reaction: relative L2 {err_onnx:.2e} exceeds the target {TARGET:g}")


if __name__ == "__main__":
    main()
