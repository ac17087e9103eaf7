"""Shared helpers for the PINN training scripts in ``models/``.

* ``MLP``: plain fully connected tanh network (``Linear`` -> ``Tanh`` ... -> ``Linear``), which the
  legacy ONNX exporter turns into a chain of ``Gemm`` and ``Tanh`` nodes.
* ``train``: Adam (with a step learning-rate schedule, optional collocation resampling) then L-BFGS
  (strong Wolfe line search), keeping the parameters with the lowest loss.
* ``export_onnx``: float32 export with the legacy exporter (opset 17), ``ir_version`` 10,
  ``onnx2snn.domain`` / ``onnx2snn.problem`` metadata, ``onnx.checker``, and an onnxruntime check.

Training runs in float64 by default (a script may choose float32) on one CPU thread; the export is
always float32.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from script_common import Log, rel_l2  # noqa: F401  (re-exported: the scripts import them from here)

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # so that the scripts can import onnx2snn.exact without install
    sys.path.insert(0, str(REPO_ROOT))

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)  # training precision; a script may switch to float32 before building

ONNX_OPSET = 17
ONNX_IR_VERSION = 10


def seed_everything(seed: int) -> None:
    """Seed Python-side RNGs used by the scripts (torch and numpy)."""
    torch.manual_seed(seed)
    np.random.seed(seed)


class MLP(torch.nn.Module):
    """``in_dim -> depth x width tanh -> out_dim`` with Xavier-normal weights and zero biases."""

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [torch.nn.Linear(d, width), torch.nn.Tanh()]
            d = width
        layers.append(torch.nn.Linear(d, out_dim))
        self.net = torch.nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_normal_(m.weight)
                torch.nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def grad(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``d(sum y)/dx`` with the graph kept (for residuals built from derivatives)."""
    return torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)[0]


def train(
    model: torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    *,
    adam_steps: int,
    adam_lr: float,
    adam_milestones: Sequence[int] = (),
    adam_gamma: float = 0.3,
    lbfgs_iters: int,
    lbfgs_chunk: int = 500,
    history_size: int = 50,
    resample: Callable[[int], None] | None = None,
    resample_every: int = 0,
    before_lbfgs: Callable[[], None] | None = None,
    monitor: Callable[[], str] | None = None,
    log: Log,
    log_every: int = 1000,
) -> dict:
    """Adam then L-BFGS on ``loss_fn()``; returns a small history dict.

    ``resample(step)`` is called every ``resample_every`` Adam steps (fresh collocation points);
    ``before_lbfgs()`` once between the phases (for example residual-based refinement of a fixed
    point set).  L-BFGS runs in chunks of ``lbfgs_chunk`` iterations; the parameters with the lowest
    loss seen at a chunk boundary are restored at the end (guards against a diverging line search).
    ``monitor()`` returns an extra string for the log (for example the error against the exact
    solution).
    """
    history: dict = {"adam": [], "lbfgs": []}
    opt = torch.optim.Adam(model.parameters(), lr=adam_lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(adam_milestones), gamma=adam_gamma)
    for step in range(1, adam_steps + 1):
        if resample is not None and resample_every and step % resample_every == 0:
            resample(step)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == adam_steps:
            extra = f"  {monitor()}" if monitor else ""
            log(f"adam {step:6d}  loss {loss.item():.3e}  lr {sched.get_last_lr()[0]:.1e}{extra}")
            history["adam"].append((step, loss.item()))
    history["adam_s"] = log.elapsed()

    if before_lbfgs is not None:
        before_lbfgs()
    opt, closure = _lbfgs(model, loss_fn, lbfgs_chunk, history_size)
    best = (float(loss_fn().item()), copy.deepcopy(model.state_dict()))
    done = 0
    while done < lbfgs_iters:
        opt.param_groups[0]["max_iter"] = min(lbfgs_chunk, lbfgs_iters - done)
        opt.step(closure)
        n = opt.state[opt._params[0]].get("n_iter", 0)
        loss = float(loss_fn().item())
        done_before, done = done, n
        extra = f"  {monitor()}" if monitor else ""
        log(f"lbfgs {done:6d}  loss {loss:.3e}{extra}")
        history["lbfgs"].append((done, loss))
        if math.isfinite(loss) and loss < best[0]:
            best = (loss, copy.deepcopy(model.state_dict()))
        # diverged, or L-BFGS stopped almost at once (tolerances met or the line search failed)
        if not math.isfinite(loss) or done - done_before < min(10, lbfgs_chunk):
            break
    model.load_state_dict(best[1])
    history["final_loss"] = best[0]
    history["lbfgs_iters"] = done
    history["train_s"] = log.elapsed()
    return history


def export_onnx(
    model: torch.nn.Module,
    path: Path,
    *,
    in_features: int,
    domain: str,
    problem: str,
    input_name: str = "x",
    output_name: str = "u",
    atol: float = 1e-6,
) -> "onnx.ModelProto":  # noqa: F821
    """Export ``model`` as float32 ONNX (legacy exporter, opset 17) with onnx2snn metadata.

    The saved model has ``ir_version`` 10, a dynamic batch axis, metadata ``onnx2snn.domain`` (the
    CLI's ``--domain`` syntax) and ``onnx2snn.problem`` (a key of ``onnx2snn.exact.EXACT``), and
    passes ``onnx.checker.check_model(full_check=True)``.  Returns the saved ``ModelProto``.
    ``atol``: absolute tolerance of the onnxruntime-vs-torch check (float32 rounding grows with the
    weights; the relative tolerance is 1e-5).
    """
    import onnx
    import onnxruntime as ort

    m32 = copy.deepcopy(model).float().eval()
    path = Path(path)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        m32,
        torch.zeros(1, in_features, dtype=torch.float32),
        str(tmp),
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )
    proto = onnx.load(str(tmp))
    tmp.unlink()
    proto.ir_version = ONNX_IR_VERSION
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {"onnx2snn.domain": domain, "onnx2snn.problem": problem})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))

    # The file must reproduce the float32 torch model.
    x = np.random.default_rng(0).uniform(-1, 1, (257, in_features)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {input_name: x})[0]
    with torch.no_grad():
        y_pt = m32(torch.from_numpy(x)).numpy()
    if not np.allclose(y_ort, y_pt, rtol=1e-5, atol=atol):
        raise RuntimeError(f"{path}: onnxruntime output differs from torch by {np.abs(y_ort - y_pt).max():.2e}")
    return proto


def onnx_predict(path: Path, x: np.ndarray, input_name: str = "x") -> np.ndarray:
    """Run the exported model with onnxruntime on float32 inputs; returns float64 ``[N, m]``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {input_name: np.asarray(x, np.float32)})[0].astype(np.float64)


def describe_onnx(proto) -> str:
    """One line: op types, opset, ir_version, metadata."""
    ops = [n.op_type for n in proto.graph.node]
    counts = {o: ops.count(o) for o in dict.fromkeys(ops)}
    meta = {p.key: p.value for p in proto.metadata_props}
    opset = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    return f"ops {counts}, opset {opset}, ir_version {proto.ir_version}, metadata {meta}"


# ---------------------------------------------------------------------------
# Additions for the diffusion-reaction, wave and separable (SPINN) scripts
# ---------------------------------------------------------------------------


def tanh_mlp_jets(
    model: MLP, x: torch.Tensor, axes: Sequence[int], scales: Sequence[float] | None = None
) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Value and first/second derivatives of a tanh ``MLP`` along input coordinate ``axes``.

    Forward-mode propagation through the layers (``z' = W h'``, ``a' = (1 - a^2) z'``,
    ``a'' = (1 - a^2) (z'' - 2 a z'^2)``), which stays differentiable for the parameter gradient and
    is several times cheaper than nested ``autograd.grad`` on a CPU.  ``scales[k]`` multiplies the
    derivative along ``axes[k]`` (chain rule of an input normalisation ``xi = s x + c`` done by the
    caller: pass ``xi`` and ``s``).  Returns ``(u, {axis: (u_axis, u_axis_axis)})``.
    """
    layers = list(model.net)
    scales = [1.0] * len(axes) if scales is None else list(scales)
    first = layers[0]
    z = first(x)
    jets = {a: (first.weight[:, a] * s, None) for a, s in zip(axes, scales)}  # [width] each, z'' = 0
    for layer in layers[1:]:
        if isinstance(layer, torch.nn.Tanh):
            h = torch.tanh(z)
            d = 1.0 - h * h
            new = {}
            for a, (z1, z2) in jets.items():
                h1 = d * z1
                h2 = -2.0 * h * d * z1 * z1 if z2 is None else d * (z2 - 2.0 * h * z1 * z1)
                new[a] = (h1, h2)
            jets = new
        elif isinstance(layer, torch.nn.Linear):
            z = layer(h)
            jets = {a: (h1 @ layer.weight.T, h2 @ layer.weight.T) for a, (h1, h2) in jets.items()}
        else:  # pragma: no cover - MLP only holds Linear and Tanh
            raise TypeError(f"tanh_mlp_jets: unsupported layer {layer}")
    return z, jets


def fold_input_affine(model: MLP, lo: Sequence[float], hi: Sequence[float]) -> MLP:
    """Copy of ``model`` with the input normalisation ``xi = (2 x - (lo + hi)) / (hi - lo)`` folded in.

    A model trained as ``model(xi)`` becomes a plain ``MLP`` of the raw input ``x`` (the first
    ``Linear`` absorbs the per-feature scale and shift), so that the export stays a chain of ``Gemm``
    and ``Tanh`` with no extra nodes.
    """
    out = copy.deepcopy(model)
    first = out.net[0]
    lo_t = torch.as_tensor(lo, dtype=first.weight.dtype)
    hi_t = torch.as_tensor(hi, dtype=first.weight.dtype)
    s = 2.0 / (hi_t - lo_t)
    c = -(lo_t + hi_t) / (hi_t - lo_t)
    with torch.no_grad():
        first.bias.add_(first.weight @ c)
        first.weight.mul_(s[None, :])
    return out


def export_multi_input_onnx(
    model: torch.nn.Module,
    path: Path,
    *,
    example: Sequence[torch.Tensor],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict,
    domain: str,
    problem: str,
    atol: float = 1e-5,
) -> "onnx.ModelProto":  # noqa: F821
    """``export_onnx`` for models with several inputs/outputs (separable PINNs).

    Same conventions: float32, legacy exporter, opset 17, ``ir_version`` 10, onnx2snn metadata,
    ``onnx.checker.check_model(full_check=True)``.  ``example`` are float32 example inputs (their
    shapes should differ from each other so that the exporter keeps the axes apart).  The saved file
    is checked against the float32 torch model with onnxruntime on the example inputs.
    """
    import onnx
    import onnxruntime as ort

    m32 = copy.deepcopy(model).float().eval()
    path = Path(path)
    tmp = path.with_suffix(".tmp.onnx")
    example = tuple(e.float() for e in example)
    torch.onnx.export(
        m32,
        example,
        str(tmp),
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_axes=dynamic_axes,
        opset_version=ONNX_OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    proto = onnx.load(str(tmp))
    tmp.unlink()
    proto.ir_version = ONNX_IR_VERSION
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {"onnx2snn.domain": domain, "onnx2snn.problem": problem})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: e.numpy() for n, e in zip(input_names, example)}
    ys_ort = sess.run(list(output_names), feeds)
    with torch.no_grad():
        ys_pt = m32(*example)
    if isinstance(ys_pt, torch.Tensor):
        ys_pt = (ys_pt,)
    for name, a, b in zip(output_names, ys_ort, ys_pt):
        b = b.numpy()
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=atol):
            diff = np.abs(a - b).max() if a.shape == b.shape else f"shape {a.shape} vs {b.shape}"
            raise RuntimeError(f"{path}: onnxruntime output {name} differs from torch: {diff}")
    return proto


def onnx_predict_multi(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a multi-input export with onnxruntime (one thread); returns float64 outputs in graph order."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {k: np.asarray(v, np.float32) for k, v in feeds.items()})
    return [o.astype(np.float64) for o in outs]


def _lbfgs(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], max_iter: int, history_size: int):
    """The L-BFGS optimizer every schedule here uses (strong Wolfe, tolerances off) and its closure."""
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=max_iter,
        max_eval=int(max_iter * 1.25),
        history_size=history_size,
        tolerance_grad=1e-12,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    return opt, closure


def lbfgs_restarted(
    model: torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    *,
    iters: int,
    chunk: int = 1000,
    history_size: int = 50,
    monitor: Callable[[], str] | None = None,
    log: Log,
    label: str = "lbfgs",
) -> float:
    """L-BFGS (strong Wolfe) in chunks of ``chunk`` iterations, each with a fresh optimizer.

    Restarting drops the curvature history, which helps when the loss landscape changes a lot along
    the way (separable networks forming a shock).  The parameters with the lowest loss seen at a
    chunk boundary are restored at the end; returns that loss.
    """

    best = (float(loss_fn().item()), copy.deepcopy(model.state_dict()))
    done = 0
    while done < iters:
        n = min(chunk, iters - done)
        opt, closure = _lbfgs(model, loss_fn, n, history_size)
        opt.step(closure)
        k = opt.state[opt._params[0]].get("n_iter", 0)
        done += n
        loss = float(loss_fn().item())
        extra = f"  {monitor()}" if monitor else ""
        log(f"{label} {done:6d}  loss {loss:.3e}{extra}")
        if math.isfinite(loss) and loss < best[0]:
            best = (loss, copy.deepcopy(model.state_dict()))
        if not math.isfinite(loss) or k < min(10, n):
            break
    model.load_state_dict(best[1])
    return best[0]
