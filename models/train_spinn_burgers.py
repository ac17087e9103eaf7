"""Train the separable (SPINN) Burgers network and export ``models/spinn_burgers.onnx``.

Problem: as ``train_burgers.py``: ``u_t + u u_x = (0.01/pi) u_xx`` on ``x in [-1, 1]``, ``t in [0, 1]``,
``u(x, 0) = -sin(pi x)``, ``u(-1, t) = u(1, t) = 0``; reference the Cole-Hopf solution
``onnx2snn.exact.burgers``.
Network (separable PINN): one tanh MLP per axis, ``f_x: 1 -> 3 x 40 tanh -> r`` and
``f_t: 1 -> 3 x 40 tanh -> r`` (``r = 16``), and ``u[i, j] = sum_r f_x(x_i)[r] f_t(t_j)[r]``
(``torch.einsum('ir,jr->ij', ...)``).  The export is one ONNX graph with inputs ``x`` ``[Nx, 1]`` and
``t`` ``[Nt, 1]`` (both axes dynamic) and output ``u`` ``[Nx, Nt]`` (the solution on the grid
``x x t``).  ``f_t`` is trained on ``2 t - 1``; the normalisation is folded into its first layer.
Loss: mean squared PDE residual on an ``Nx x Nt`` grid + initial-condition and boundary mean squared
errors.  The separable structure makes the residual cheap: ``u_x = f_x' f_t^T``,
``u_xx = f_x'' f_t^T``, ``u_t = f_x f_t'^T``, with ``f'`` and ``f''`` of each 1-D network by
forward-mode propagation (``pinn_common.tanh_mlp_jets``).  Adam on grids redrawn every step (uniform
plus a band around the shock), then L-BFGS on a fixed grid whose x points are refined where the
residual is largest.  Seeded, float64, one thread.

    OMP_NUM_THREADS=1 python models/train_spinn_burgers.py
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
    export_multi_input_onnx,
    fold_input_affine,
    lbfgs_restarted,
    n_params,
    onnx_predict_multi,
    rel_l2,
    seed_everything,
    tanh_mlp_jets,
)
from onnx2snn.exact import BURGERS_NU, burgers  # noqa: E402

SEED = 0
WIDTH, DEPTH, RANK = 40, 3, 32
NX_UNIFORM, NX_SHOCK, NT = 512, 256, 100  # collocation grid: linspace x + random |x| < 0.1, linspace t
N_IC, N_BC = 256, 128
ADAM_STEPS, ADAM_LR = 1000, 1e-3
NU_STAGES = (0.05, 0.02, 0.01, 0.005)  # viscosity continuation before the true nu = 0.01/pi
STAGE_ITERS = 1000
LBFGS_ITERS, LBFGS_CHUNK = 15000, 1000  # at the true nu, restarted every chunk
TARGET = 3e-2
OUT = Path(__file__).resolve().parent / "spinn_burgers.onnx"


class SeparableBurgers(torch.nn.Module):
    """``u[i, j] = sum_r f_x(x_i)[r] f_t(t_j)[r]``; inputs ``x`` ``[Nx, 1]``, ``t`` ``[Nt, 1]``."""

    def __init__(self, width: int, depth: int, rank: int) -> None:
        super().__init__()
        self.fx = MLP(1, width, depth, rank)
        self.ft = MLP(1, width, depth, rank)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ir,jr->ij", self.fx(x), self.ft(t))


def eval_grid() -> tuple[np.ndarray, np.ndarray]:
    """The 256 x 100 evaluation grid axes: x = linspace(-1, 1, 256), t = linspace(0, 0.99, 100)."""
    return np.linspace(-1, 1, 256), np.linspace(0, 0.99, 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=RANK)
    ap.add_argument("--width", type=int, default=WIDTH)
    ap.add_argument("--depth", type=int, default=DEPTH)
    ap.add_argument("--adam", type=int, default=ADAM_STEPS, help="Adam steps (at the first continuation nu)")
    ap.add_argument("--stage-iters", type=int, default=STAGE_ITERS, help="L-BFGS iterations per continuation stage")
    ap.add_argument("--lbfgs", type=int, default=LBFGS_ITERS, help="L-BFGS iterations at the true nu")
    ap.add_argument("-o", "--output", type=Path, default=OUT, help=f"default {OUT}")
    args = ap.parse_args()

    log = Log()
    seed_everything(SEED)
    model = SeparableBurgers(args.width, args.depth, args.rank)
    log(
        f"spinn_burgers: x, t: 1 -> {args.depth}x{args.width} tanh -> {args.rank} each, einsum; "
        f"{n_params(model)} parameters, torch {torch.__version__}"
    )
    gen = torch.Generator().manual_seed(SEED)

    x = torch.cat([torch.linspace(-1, 1, NX_UNIFORM), 0.2 * torch.rand(NX_SHOCK, generator=gen) - 0.1])[:, None]
    t = torch.linspace(0, 1, NT)[:, None]
    x_ic = torch.linspace(-1, 1, N_IC)[:, None]
    u_ic = -torch.sin(math.pi * x_ic)
    x_bc = torch.tensor([[-1.0], [1.0]])
    t_bc = torch.linspace(0, 1, N_BC)[:, None]
    state = {"nu": NU_STAGES[0]}

    xe, te = eval_grid()
    X, T = np.meshgrid(xe, te, indexing="ij")
    u_ref = burgers(np.stack([X.ravel(), T.ravel()], 1)).reshape(len(xe), len(te))
    xe_t, te_t = torch.from_numpy(xe)[:, None], torch.from_numpy(te)[:, None]

    def loss_fn() -> torch.Tensor:
        fx, jx = tanh_mlp_jets(model.fx, x, [0])
        ft, jt = tanh_mlp_jets(model.ft, 2 * t - 1, [0], [2.0])  # f_t is trained on 2 t - 1
        (fx1, fx2), ft1 = jx[0], jt[0][0]
        u = fx @ ft.T
        r = fx @ ft1.T + u * (fx1 @ ft.T) - state["nu"] * (fx2 @ ft.T)
        ic = model.fx(x_ic) @ model.ft(-torch.ones(1, 1)).T - u_ic
        bc = model.fx(x_bc) @ model.ft(2 * t_bc - 1).T
        return r.pow(2).mean() + ic.pow(2).mean() + bc.pow(2).mean()

    def predict(m: torch.nn.Module) -> np.ndarray:
        with torch.no_grad():
            return (m.fx(xe_t) @ m.ft(2 * te_t - 1).T).numpy()

    def monitor() -> str:
        u = predict(model)
        e = np.sqrt(((u - u_ref) ** 2).mean(axis=0) / (u_ref**2).mean(axis=0))  # per t
        return f"rel_l2 {rel_l2(u, u_ref):.2e} (t=0: {e[0]:.1e}, t=0.5: {e[50]:.1e}, t=0.99: {e[-1]:.1e})"

    opt = torch.optim.Adam(model.parameters(), lr=ADAM_LR)
    for step in range(1, args.adam + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == args.adam:
            log(f"adam {step:6d}  nu {state['nu']:.4f}  loss {loss.item():.3e}  {monitor()}")
    for nu in NU_STAGES:
        state["nu"] = nu
        lbfgs_restarted(
            model, loss_fn, iters=args.stage_iters, chunk=LBFGS_CHUNK, monitor=monitor, log=log, label=f"lbfgs nu {nu:.4f}"
        )
    state["nu"] = BURGERS_NU
    final_loss = lbfgs_restarted(
        model, loss_fn, iters=args.lbfgs, chunk=LBFGS_CHUNK, monitor=monitor, log=log, label=f"lbfgs nu {BURGERS_NU:.4f}"
    )
    train_s = log.elapsed()
    err_torch = rel_l2(predict(model), u_ref)

    export = SeparableBurgers(args.width, args.depth, args.rank)
    export.fx = model.fx
    export.ft = fold_input_affine(model.ft, [0.0], [1.0])  # f_t of raw t
    with torch.no_grad():
        fold_err = np.abs(export(xe_t, te_t).numpy() - predict(model)).max()
    out = args.output
    proto = export_multi_input_onnx(
        export,
        out,
        example=(torch.linspace(-1, 1, 7)[:, None], torch.linspace(0, 1, 5)[:, None]),
        input_names=["x", "t"],
        output_names=["u"],
        dynamic_axes={"x": {0: "nx"}, "t": {0: "nt"}, "u": {0: "nx", 1: "nt"}},
        domain="x=-1:1;t=0:1",
        problem="burgers_separable",
    )
    log(f"exported {out}: {describe_onnx(proto)}")
    (u_onnx,) = onnx_predict_multi(out, {"x": xe[:, None], "t": te[:, None]})
    err_onnx = rel_l2(u_onnx, u_ref)
    rng = np.random.default_rng(1)
    xr, tr = np.sort(rng.uniform(-1, 1, 400)), np.sort(rng.uniform(0, 1, 50))
    Xr, Tr = np.meshgrid(xr, tr, indexing="ij")
    (u_r,) = onnx_predict_multi(out, {"x": xr[:, None], "t": tr[:, None]})
    err_rand = rel_l2(u_r, burgers(np.stack([Xr.ravel(), Tr.ravel()], 1)).reshape(len(xr), len(tr)))
    print(f"parameters            {n_params(model)}")
    print(f"final loss            {final_loss:.3e}")
    print(f"input-normalisation fold: max |difference| {fold_err:.1e}")
    print(f"rel L2 vs Cole-Hopf, torch float64, 256x100 grid: {err_torch:.3e}")
    print(f"rel L2 vs Cole-Hopf, ONNX float32,  256x100 grid: {err_onnx:.3e}  (max abs error {np.abs(u_onnx - u_ref).max():.2e})")
    print(f"rel L2 vs Cole-Hopf, ONNX float32,  random 400x50 grid: {err_rand:.3e}")
    print(f"training time {train_s:.1f} s, total wall time {log.elapsed():.1f} s")
    if err_onnx > TARGET:
        raise SystemExit(f"spinn_burgers: relative L2 {err_onnx:.2e} exceeds the target {TARGET:g}")


if __name__ == "__main__":
    main()
