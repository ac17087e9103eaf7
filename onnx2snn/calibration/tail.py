"""The analog tail: how the graph outputs depend, to first order, on the values the SNN delivers.

The SNN hands the analog part of the graph its *boundary* values b: the outputs of the readouts and the
decoded activations of the layers read directly (a residual ``Add``, a graph output).  Everything after
them (``tanh`` of a readout, a skip connection, a hard boundary-condition factor x(1-x)·NN) is evaluated
on them, so the output error is, to first order,

    y_m(x) - y_m^ANN(x) ≈ Σ_w J[x, w, m]·(b_w(x) - b_w^ANN(x)),    J[x, w, m] = ∂y_m/∂b_w at b^ANN(x)

for every calibration point x.  ``finetune`` minimises the output error (the tail run exactly by
``evaluate``, J for its gradient) instead of fitting each boundary value separately: only the combinations
of boundary errors that reach the outputs count (a scalar output behind a 16-unit residual layer
constrains one combination of the 16 errors, not 16).

The same exact tail serves ``--pieces auto``: ``OutputTail.output_error`` is the error each auto pass
measures (``pipeline._output_error``), so the passes decide on the graph outputs, not on the readouts.

J comes from central differences through onnxruntime on the tail subgraph (``onnx.utils.Extractor`` on
the shape-inferred model: boundary tensors and graph inputs in, graph outputs out), step
h_w = 1e-3·rms(b_w), 2·W runs on the calibration points, made on first use of ``OutputTail.jacobian``
(only ``finetune`` uses it; the auto passes need one run per pass).  ``output_tail`` returns None where the
tail is the identity (every boundary value is a graph output), where points do not map one to one onto
output rows (separable grids: ``grid_error.py``), or where the tail cannot be extracted or run;
``jacobian`` is None, and ``finetune`` keeps its per-boundary loss, where J would exceed ``MAX_ELEMENTS``
or cannot be computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np
import onnx

from ..structure import Structure

MAX_ELEMENTS = 1 << 24          # J [N, W, P] in float64: 128 MiB
RELATIVE_STEP = 1e-3


@dataclass
class OutputTail:
    """``boundary`` tensor names in the order of J's w axis (readout outputs, then layers read directly,
    each contributing its last-axis width); ``outputs`` y^ANN [N, P]; ``evaluate``: boundary values [N, w]
    in that order → the graph outputs [N, P] (the exact tail); with ``rows``, values [len(rows), w] of those
    points only → their outputs [len(rows), P]; ``differentiate``: () → J [N, W, P] or None."""

    boundary: list[str]
    outputs: np.ndarray
    evaluate: Callable[..., np.ndarray]
    differentiate: Callable[[], np.ndarray | None] = field(default=lambda: None, repr=False)

    @cached_property
    def jacobian(self) -> np.ndarray | None:
        """J [N, W, P] = ∂y_m/∂b_w at b^ANN(x), computed on first use; None where it is too large (more than
        ``MAX_ELEMENTS``), not finite, or onnxruntime fails on a perturbed run."""
        return self.differentiate()

    @cached_property
    def norms(self) -> np.ndarray:
        """E_x |y_m^ANN|² per output m [P], the scale of the relative error."""
        return np.maximum(np.mean(self.outputs ** 2, axis=0), 1e-30)

    def output_error(self, values: list[np.ndarray]) -> float:
        """(Σ_m E|y_m - y_m^ANN|² / E|y_m^ANN|²)^½ with the tail run exactly on ``values``."""
        error = self.evaluate(values) - self.outputs
        return float(np.sqrt(np.sum(np.mean(error ** 2, axis=0) / self.norms)))


def boundary_tensors(structure: Structure) -> list[str]:
    """Readout outputs, then the decoded step tensors analog nodes read (``Structure.decoded``: the
    activation outputs of the layers read directly, and link outputs such as a residual sum)."""
    return [a.output for a in structure.readouts] + [link.output for link in structure.decoded]


def output_tail(model: onnx.ModelProto, structure: Structure, ann: dict[str, np.ndarray],
                feeds: dict[str, np.ndarray]) -> OutputTail | None:
    """The exact tail at the calibration points, and J of the graph outputs with respect to the boundary
    values on demand (see above); one onnxruntime run here."""
    boundary = boundary_tensors(structure)
    outputs = [o.name for o in model.graph.output]
    if set(boundary) == set(outputs) or any(name not in ann for name in boundary + outputs):
        return None
    rows = {ann[name].reshape(-1, ann[name].shape[-1]).shape[0] for name in boundary + outputs}
    if len(rows) != 1:
        return None
    base = {name: ann[name] for name in boundary}
    base.update(feeds)
    try:
        run = tail_runner(model, boundary, outputs)
        y0 = run(base)
    except Exception:  # noqa: BLE001 - any failure of extraction or onnxruntime: no tail
        return None
    if not np.all(np.isfinite(y0)):
        return None

    def evaluate(values: list[np.ndarray], rows: np.ndarray | None = None) -> np.ndarray:
        moved = dict(base)
        for name, value in zip(boundary, values):
            if rows is not None:                  # the other points keep their ANN values
                full = ann[name].reshape(-1, ann[name].shape[-1]).copy()
                full[rows] = value
                value = full
            moved[name] = value.reshape(ann[name].shape).astype(ann[name].dtype)
        y = run(moved)
        return y if rows is None else y[rows]

    return OutputTail(boundary=boundary, outputs=y0, evaluate=evaluate,
                      differentiate=lambda: jacobian_of(run, base, boundary, y0))


def jacobian_of(run, base: dict[str, np.ndarray], boundary: list[str], y0: np.ndarray) -> np.ndarray | None:
    """J [N, W, P] by central differences: for each boundary column w, (y(b + h_w·e_w) - y(b - h_w·e_w)) over
    the perturbation actually made (2·W runs of the tail ``run`` from the ANN values ``base``)."""
    if y0.size * sum(base[name].shape[-1] for name in boundary) > MAX_ELEMENTS:
        return None
    columns = []
    try:
        for name in boundary:
            value = base[name]
            scale = np.sqrt(np.mean(np.square(value.astype(np.float64)), axis=tuple(range(value.ndim - 1)))) + 1e-6
            for w in range(value.shape[-1]):
                step = RELATIVE_STEP * scale[w]
                shifted, moved_to = [], []
                for sign in (1.0, -1.0):
                    moved = value.copy()
                    moved[..., w] += value.dtype.type(sign * step)
                    shifted.append(run({**base, name: moved}))
                    moved_to.append(moved[..., w].reshape(-1, 1).astype(np.float64))
                # divide by the perturbation actually made (value ± step rounds in float32)
                columns.append((shifted[0] - shifted[1]) / (moved_to[0] - moved_to[1]))
    except Exception:  # noqa: BLE001 - any failure of onnxruntime: finetune keeps the per-boundary loss
        return None
    jacobian = np.stack(columns, axis=1)                       # [N, W, P]
    return jacobian if np.all(np.isfinite(jacobian)) else None


def tail_runner(model: onnx.ModelProto, boundary: list[str], outputs: list[str]):
    """A function {tensor: value} → graph outputs flattened to [N, P] (float64), via onnxruntime."""
    run_outputs = tail_outputs_runner(model, boundary, outputs)

    def run(values: dict[str, np.ndarray]) -> np.ndarray:
        N = values[boundary[0]].reshape(-1, values[boundary[0]].shape[-1]).shape[0]
        return np.concatenate([r.reshape(N, -1) for r in run_outputs(values)], axis=1)

    return run


def tail_outputs_runner(model: onnx.ModelProto, boundary: list[str], outputs: list[str]):
    """A function {tensor: value} → the graph outputs ``outputs`` as they come (float64), computed by
    onnxruntime from the ``boundary`` tensors and the graph inputs (the tail subgraph)."""
    import onnxruntime as ort

    from ..ann import session_options

    inputs = boundary + [i.name for i in model.graph.input if i.name not in boundary]
    tail = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(model)).extract_model(inputs, outputs)
    session = ort.InferenceSession(tail.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    needed = [i.name for i in session.get_inputs()]

    def run(values: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(r, np.float64) for r in session.run(outputs, {name: values[name] for name in needed})]

    return run


def refit_through_tail(inputs: list[np.ndarray], targets: list[np.ndarray], held_errors: list[np.ndarray],
                       tail: OutputTail, ridge: float = 1e-8) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Readout affines (W_o, b_o) minimising the linearised output error, given the layers (closed form).

    With ũ_o = [u_o, 1] the readout inputs [N, m_o + 1], Θ_o = [W_o; b_o] and the boundary errors
    e_o = ũ_o·Θ_o - y_o^ANN (readouts) and e_h (``held_errors``: the layers read directly, fixed here),

        r[x, m] = Σ_o Σ_{i,w} J[x, w_o, m]·ũ_o[x, i]·Θ_o[i, w]  -  Σ_o Σ_w J[x, w_o, m]·y_o[x, w]
                  +  Σ_h Σ_w J[x, w_h, m]·e_h[x, w]

    is linear in Θ: least squares over the rows (x, m), each output m scaled by 1/rms(y_m), with a ridge
    ``ridge``·tr(AᵀA)/U.  Returns None if the system has more than ``MAX_ELEMENTS`` entries."""
    N, _, P = tail.jacobian.shape
    if N * P * sum((u.shape[1] + 1) * y.shape[1] for u, y in zip(inputs, targets)) > MAX_ELEMENTS:
        return None
    J = tail.jacobian / np.sqrt(tail.norms)                                                # [N, W, P]
    blocks, offset, rhs = [], 0, np.zeros((N, P))
    for u, y in zip(inputs, targets):
        p = y.shape[1]
        Jo = J[:, offset:offset + p]
        extended = np.concatenate([u.astype(np.float64), np.ones((N, 1))], axis=1)         # [N, m + 1]
        blocks.append(np.einsum("xwm,xi->xmiw", Jo, extended).reshape(N * P, -1))
        rhs += np.einsum("xwm,xw->xm", Jo, y.astype(np.float64))
        offset += p
    for e in held_errors:
        rhs -= np.einsum("xwm,xw->xm", J[:, offset:offset + e.shape[1]], e.astype(np.float64))
        offset += e.shape[1]
    A = np.concatenate(blocks, axis=1)
    gram = A.T @ A
    gram += ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
    theta = np.linalg.solve(gram, A.T @ rhs.reshape(-1))
    fitted, start = [], 0
    for u, y in zip(inputs, targets):
        size = (u.shape[1] + 1) * y.shape[1]
        block = theta[start:start + size].reshape(u.shape[1] + 1, y.shape[1])
        fitted.append((block[:-1], block[-1]))
        start += size
    return fitted
