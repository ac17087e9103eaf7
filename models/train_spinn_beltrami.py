"""Train the separable (SPINN) Beltrami-flow network and export ``models/spinn_beltrami.onnx``.

Problem: unsteady incompressible 3-D Navier-Stokes, ``u_t + (u . grad) u = -grad p + nu lap u``,
``div u = 0``, with ``nu = 1`` (``Re = 1``) on ``[-1, 1]^3 x [0, 1]``; initial and boundary data from
the Ethier-Steinman Beltrami flow (``a = d = 1``, ``onnx2snn.exact.beltrami``), which is also the
reference.
Network (separable PINN): one tanh MLP per axis, ``f_a: 1 -> 2 x 50 tanh -> 4 r`` for
``a = x, y, z, t`` (``r = 16`` features for each of the fields ``u, v, w, p``), and for field ``q``
``q[i, j, k, l] = sum_r f_x(x_i)[q, r] f_y(y_j)[q, r] f_z(z_k)[q, r] f_t(t_l)[q, r]``
(``torch.einsum('ir,jr,kr,lr->ijkl', ...)`` per field).  The export is one ONNX graph with inputs
``x``, ``y``, ``z``, ``t`` ``[N_a, 1]`` (each axis dynamic) and outputs ``u``, ``v``, ``w``, ``p``
``[Nx, Ny, Nz, Nt]`` (the fields on the grid).  ``f_t`` is trained on ``2 t - 1``; the normalisation is
folded into its first layer for the export.
Loss: mean squared momentum and continuity residuals on an ``Nx x Ny x Nz x Nt`` grid (derivatives of
each 1-D network by forward-mode propagation, ``pinn_common.tanh_mlp_jets``; the grid derivatives are
einsums of them), plus mean squared errors of all four fields against the exact solution on the
initial slice ``t = 0`` and on the six faces of the cube (random axis points, exact values).  Adam
(5000 steps, lr 1e-3, x0.3 at 2500 and 4166) on ``12^3 x 6`` grids redrawn every step, then 3000
L-BFGS iterations (strong Wolfe) on a fixed ``16^3 x 8`` grid.  Seeded, float64, one thread.
``benchmarks/training_time.py`` times the same residual for this network and a plain 4-input PINN.

    OMP_NUM_THREADS=1 python models/train_spinn_beltrami.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pinn_common import (  # noqa: E402
    MLP,
    Log,
    describe_onnx,
    export_multi_input_onnx,
    fold_input_affine,
    n_params,
    onnx_predict_multi,
    rel_l2,
    seed_everything,
    tanh_mlp_jets,
    train,
)
from onnx2snn.exact import beltrami  # noqa: E402

SEED = 0
WIDTH, DEPTH, RANK = 50, 2, 16
NU = 1.0
N_SPACE, N_TIME = 12, 6  # Adam grid (redrawn every step); the L-BFGS grid is 16^3 x 8
N_SPACE_LB, N_TIME_LB = 16, 8
ADAM_STEPS, ADAM_LR = 5000, 1e-3
LBFGS_ITERS = 3000
TARGET = 3e-2
FIELDS = ("u", "v", "w", "p")
AXES = ("x", "y", "z", "t")
OUT = Path(__file__).resolve().parent / "spinn_beltrami.onnx"


class SeparableBeltrami(torch.nn.Module):
    """Per-axis MLPs ``1 -> depth x width -> 4 r``; field ``q`` is the rank-``r`` product of the axes."""

    def __init__(self, width: int, depth: int, rank: int) -> None:
        super().__init__()
        self.rank = rank
        self.fx = MLP(1, width, depth, 4 * rank)
        self.fy = MLP(1, width, depth, 4 * rank)
        self.fz = MLP(1, width, depth, 4 * rank)
        self.ft = MLP(1, width, depth, 4 * rank)

    def nets(self) -> tuple[MLP, MLP, MLP, MLP]:
        return self.fx, self.fy, self.fz, self.ft

    def forward(self, x, y, z, t):
        r = self.rank
        fx, fy, fz, ft = self.fx(x), self.fy(y), self.fz(z), self.ft(t)
        return tuple(
            torch.einsum(
                "ir,jr,kr,lr->ijkl",
                fx[:, q * r : (q + 1) * r],
                fy[:, q * r : (q + 1) * r],
                fz[:, q * r : (q + 1) * r],
                ft[:, q * r : (q + 1) * r],
            )
            for q in range(4)
        )


def grid_points(x, y, z, t) -> np.ndarray:
    """``[Nx Ny Nz Nt, 4]`` points of the grid (``ij`` order, matching the model output layout)."""
    g = np.meshgrid(*(np.asarray(a, np.float64).ravel() for a in (x, y, z, t)), indexing="ij")
    return np.stack([a.ravel() for a in g], axis=1)


def exact_grid(x, y, z, t) -> torch.Tensor:
    """Exact ``(u, v, w, p)`` on the grid as ``[4, Nx, Ny, Nz, Nt]``."""
    shape = tuple(len(np.asarray(a).ravel()) for a in (x, y, z, t))
    vals = beltrami(grid_points(x, y, z, t))
    return torch.from_numpy(np.ascontiguousarray(vals.T.reshape(4, *shape)))


def contract(fx: torch.Tensor, fy: torch.Tensor, fz: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """Per-axis features ``[N_a, 4, r]`` -> fields ``[4, Nx, Ny, Nz, Nt]`` (rank-``r`` product per field)."""
    return torch.einsum("iqr,jqr,kqr,lqr->qijkl", fx, fy, fz, ft)


def spinn_jets(model: SeparableBeltrami, axes_pts: Sequence[torch.Tensor]):
    """Fields, first derivatives along x, y, z, t and spatial Laplacian on the grid ``x x y x z x t``.

    ``axes_pts``: ``[x, y, z, t]``, each ``[N_a, 1]`` (raw ``t``; ``f_t`` sees ``2 t - 1``).  Each 1-D
    network's derivatives come from forward-mode propagation; a grid derivative is the einsum with one
    axis' features replaced by their derivative.  Returns ``(U, [Ux, Uy, Uz, Ut], lap)``, each
    ``[4, Nx, Ny, Nz, Nt]`` (fields ``u, v, w, p``).
    """
    r = model.rank
    feats, d1, d2 = [], [], []
    for k, (net, a) in enumerate(zip(model.nets(), axes_pts)):
        is_t = k == 3
        f, j = tanh_mlp_jets(net, 2 * a - 1 if is_t else a, [0], [2.0] if is_t else None)
        n = len(a)
        feats.append(f.reshape(n, 4, r))
        d1.append(j[0][0].reshape(n, 4, r))
        d2.append(j[0][1].reshape(n, 4, r))

    def d(k: int, dk: list[torch.Tensor]) -> torch.Tensor:
        parts = list(feats)
        parts[k] = dk[k]
        return contract(*parts)

    U = contract(*feats)
    grads = [d(k, d1) for k in range(4)]
    lap = d(0, d2) + d(1, d2) + d(2, d2)
    return U, grads, lap


def ns_residuals(
    U: torch.Tensor, grads: Sequence[torch.Tensor], lap: torch.Tensor, nu: float = NU
) -> list[torch.Tensor]:
    """Momentum ``u_t + (u . grad) u + grad p - nu lap u`` (3 components) and continuity ``div u``.

    ``U``: fields ``(u, v, w, p)`` stacked on the first axis; ``grads``: their derivatives along
    ``x, y, z, t`` (same layout); ``lap``: their spatial Laplacian.  Works for grid-shaped (separable)
    and point-list (plain PINN) layouts alike.
    """
    Ux, Uy, Uz, Ut = grads
    u, v, w = U[0], U[1], U[2]
    grad_p = (Ux[3], Uy[3], Uz[3])
    mom = [Ut[q] + u * Ux[q] + v * Uy[q] + w * Uz[q] + grad_p[q] - nu * lap[q] for q in range(3)]
    return [*mom, Ux[0] + Uy[1] + Uz[2]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=RANK)
    ap.add_argument("--width", type=int, default=WIDTH)
    ap.add_argument("--depth", type=int, default=DEPTH)
    ap.add_argument("--adam", type=int, default=ADAM_STEPS, help="Adam steps")
    ap.add_argument("--lbfgs", type=int, default=LBFGS_ITERS, help="L-BFGS iterations")
    ap.add_argument("-o", "--output", type=Path, default=OUT, help=f"default {OUT}")
    args = ap.parse_args()
    r = args.rank

    log = Log()
    seed_everything(SEED)
    model = SeparableBeltrami(args.width, args.depth, r)
    log(
        f"spinn_beltrami: x, y, z, t: 1 -> {args.depth}x{args.width} tanh -> 4x{r} each, einsum per field; "
        f"{n_params(model)} parameters, torch {torch.__version__}"
    )
    gen = torch.Generator().manual_seed(SEED)

    def feats(net: MLP, a: torch.Tensor, is_t: bool) -> torch.Tensor:
        return net(2 * a - 1 if is_t else a).reshape(len(a), 4, r)

    def full(axes_pts) -> torch.Tensor:
        return contract(*(feats(net, a, k == 3) for k, (net, a) in enumerate(zip(model.nets(), axes_pts))))

    def draw(n_space: int, n_time: int):
        xs = [2 * torch.rand(n_space, 1, generator=gen) - 1 for _ in range(3)]
        return [*xs, torch.rand(n_time, 1, generator=gen)]

    def make_data(n_space: int, n_time: int) -> dict:
        """Collocation grid plus initial slice and the six faces, with exact values."""
        g = draw(n_space, n_time)
        ic = draw(n_space, n_time)[:3] + [torch.zeros(1, 1)]
        faces = []
        pm = torch.tensor([[-1.0], [1.0]])
        for k in range(3):
            pts = draw(n_space, n_time)
            pts[k] = pm
            faces.append(pts)
        return {
            "grid": g,
            "ic": (ic, exact_grid(*(a.numpy() for a in ic))),
            "faces": [(f, exact_grid(*(a.numpy() for a in f))) for f in faces],
        }

    state = {"data": make_data(N_SPACE, N_TIME)}

    def loss_fn() -> torch.Tensor:
        data = state["data"]
        res = sum(rr.pow(2).mean() for rr in ns_residuals(*spinn_jets(model, data["grid"])))
        pts, ref = data["ic"]
        ic = (full(pts) - ref).pow(2).mean()
        bc = sum((full(pts) - ref).pow(2).mean() for pts, ref in data["faces"]) / 3
        return res + ic + bc

    def resample(_step: int = 0) -> None:
        state["data"] = make_data(N_SPACE, N_TIME)

    def fixed_set() -> None:
        state["data"] = make_data(N_SPACE_LB, N_TIME_LB)
        log(f"L-BFGS grid {N_SPACE_LB}^3 x {N_TIME_LB}")

    g_sp, g_t = np.linspace(-1, 1, 21), np.linspace(0, 1, 11)
    eval_axes = [torch.from_numpy(g_sp)[:, None]] * 3 + [torch.from_numpy(g_t)[:, None]]
    ref_eval = exact_grid(g_sp, g_sp, g_sp, g_t).numpy()

    def errors(pred: np.ndarray) -> list[float]:
        return [rel_l2(pred[q], ref_eval[q]) for q in range(4)]

    def monitor() -> str:
        with torch.no_grad():
            e = errors(full(eval_axes).numpy())
        return "rel_l2 " + " ".join(f"{n} {v:.2e}" for n, v in zip(FIELDS, e))

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
    with torch.no_grad():
        pred_torch = full(eval_axes).numpy()
    err_torch = errors(pred_torch)

    export = SeparableBeltrami(args.width, args.depth, r)
    export.fx, export.fy, export.fz = model.fx, model.fy, model.fz
    export.ft = fold_input_affine(model.ft, [0.0], [1.0])  # f_t of raw t
    with torch.no_grad():
        fold_err = max(
            np.abs(a.numpy() - b).max() for a, b in zip(export(*eval_axes), pred_torch)
        )
    out = args.output
    proto = export_multi_input_onnx(
        export,
        out,
        example=tuple(torch.linspace(lo, 1.0, n)[:, None] for lo, n in ((-1.0, 7), (-1.0, 6), (-1.0, 5), (0.0, 4))),
        input_names=list(AXES),
        output_names=list(FIELDS),
        dynamic_axes={
            **{a: {0: f"n{a}"} for a in AXES},
            **{q: {k: f"n{a}" for k, a in enumerate(AXES)} for q in FIELDS},
        },
        domain="x=-1:1;y=-1:1;z=-1:1;t=0:1",
        problem="beltrami_separable",
    )
    log(f"exported {out}: {describe_onnx(proto)}")
    outs = onnx_predict_multi(out, {"x": g_sp[:, None], "y": g_sp[:, None], "z": g_sp[:, None], "t": g_t[:, None]})
    err_onnx = errors(np.stack(outs))
    rng = np.random.default_rng(1)  # off-grid check: sorted random axes, 17^3 x 9 points
    rand_axes = [np.sort(rng.uniform(-1, 1, 17)) for _ in range(3)] + [np.sort(rng.uniform(0, 1, 9))]
    outs_r = np.stack(onnx_predict_multi(out, {a: v[:, None] for a, v in zip(AXES, rand_axes)}))
    ref_r = exact_grid(*rand_axes).numpy()
    err_rand = [rel_l2(outs_r[q], ref_r[q]) for q in range(4)]
    print(f"parameters            {n_params(model)}")
    print(f"final loss            {hist['final_loss']:.3e}  (L-BFGS iterations {hist['lbfgs_iters']})")
    print(f"input-normalisation fold: max |difference| {fold_err:.1e}")
    for name, errs, grid in (
        ("torch float64", err_torch, "21^3 x 11 grid"),
        ("ONNX float32 ", err_onnx, "21^3 x 11 grid"),
        ("ONNX float32 ", err_rand, "random 17^3 x 9 grid"),
    ):
        print(
            f"rel L2 vs exact, {name}, {grid}: "
            + "  ".join(f"{n} {e:.3e}" for n, e in zip(FIELDS, errs))
        )
    print(f"training time {train_s:.1f} s, total wall time {log.elapsed():.1f} s")
    if max(err_onnx) > TARGET:
        raise SystemExit(f"spinn_beltrami: relative L2 {max(err_onnx):.2e} exceeds the target {TARGET:g}")


if __name__ == "__main__":
    main()
