"""Streaming execution of a delta-coded artifact (``spec``, coding "delta"): its points are its steps.

The graph runs on a block of consecutive rows at once, node by node in graph order; a delta IF node is
the only node that couples rows: it scans the rows of its current in order, carrying r (the value each
unit has sent so far) from row to row and from one block to the next.  That is the streaming execution of
``spec``: no other node reads another row.  A row-wise graph (``rows.row_inputs``) runs in blocks of
``BLOCK_ROWS`` points, so memory stays bounded for any number of points; any other graph (a separable
network, whose inputs each stream their own rows) runs whole.

The stream computes in float64 with the specified arithmetic of ``stream_math`` (``spec``): floating
initializers and inputs are upcast (exact for float32), contractions sum in a fixed order and activations
follow fixed algorithms of IEEE-754 basic operations, so every runtime computes the same activations,
hence the same spikes, bit for bit; the outputs are cast back to the graph's declared types.

A backend supplies ``StreamOps``: how arrays move in and out, how a standard node runs, and the delta
layer's scan.  ``NumpyStreamOps`` is the reference: the ops ``stream_math`` specifies by its kernels
(``compiled``, default: ``stream_math_compiled``'s numba loops, the same bits), the others by their numpy
kernels (``ops``), the scan as ``neuron.delta_step`` row by row, or (``compiled``) as one numba loop doing
the same float operations in the same order (bit-identical).  ``snntorch_stream.TorchStreamOps`` runs it
in torch.

Counts per IF node (``DeltaCounts``): ``events`` as the chip sends them (Σ|k| binary events, or one per
sending unit when ``graded``), ``changes`` the sending units (the events a graded or a delta-ANN layer
sends), both also per row (``per_row``, ``changes_per_row``), over ``neurons`` units × ``batch`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import kernels, spec, stream_math, stream_math_compiled
from .errors import ArtifactError
from .neuron import NeuronParams, delta_step
from .numpy_ref import RunResult, SpikeCounts
from .rows import chunks, row_inputs
from .schedule import PlannedNode, if_coding

BLOCK_ROWS = 1 << 16        # points per block of a row-wise stream (memory: a few [block, units] arrays)


@dataclass
class DeltaCounts(SpikeCounts):
    """``SpikeCounts`` of a delta layer, with its sending units and both counts per row (module docstring)."""

    changes: int = 0
    graded: bool = False
    per_row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    changes_per_row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def is_delta(model: onnx.ModelProto) -> bool:
    """Whether the artifact is delta-coded; raises ``ArtifactError`` when it mixes delta IF nodes with
    others (``spec``: every IF node of a delta artifact is delta-coded, and it has no Decode)."""
    custom = [n for n in model.graph.node if n.domain == spec.DOMAIN]
    delta = [n for n in custom if n.op_type == spec.IF_OP and if_coding(n) == spec.CODING_DELTA]
    if delta and len(delta) != len(custom):
        other = next(n for n in custom if n not in delta)
        raise ArtifactError(f"node '{other.name}': a delta-coded artifact holds only delta-coded IF nodes (spec)")
    return bool(delta)


def delta_params(node: PlannedNode, values: dict) -> NeuronParams:
    """The neuron parameters of delta IF node ``node`` from the initializers in ``values``."""
    graded = next((helper.get_attribute_value(a) for a in node.proto.attribute if a.name == spec.IF_GRADED), 0)
    try:
        bias, pos, neg, r0 = (values[node.inputs[k]] for k in
                              (spec.IF_BIAS, spec.IF_THETA_POS, spec.IF_THETA_NEG, spec.IF_MEMBRANE))
    except KeyError as e:
        raise ArtifactError(f"node '{node.name}': delta IF parameter {e} is not an initializer") from None
    if not (np.all(np.isfinite(pos)) and np.all(pos > 0) and np.all(np.isfinite(neg)) and np.all(neg > 0)):
        raise ArtifactError(f"node '{node.name}': a delta IF node's thresholds are finite and positive (spec)")
    return NeuronParams(bias=bias, theta_pos=pos, theta_neg=neg, v0=r0, signed=True,
                        fire_fraction=node.fire_fraction, coding=spec.CODING_DELTA, graded=bool(graded))


class NumpyStreamOps:
    """The numpy reference (module docstring); ``compiled``: the scan as one numba loop."""

    name = "numpy"

    def __init__(self, compiled: bool = True):
        self.compiled = compiled and kernels.available

    def array(self, x):
        return x

    def numpy(self, x) -> np.ndarray:
        return x

    def kernel(self, node: PlannedNode, values: dict):
        specified = stream_math_compiled.kernel(node.proto) if self.compiled else stream_math.kernel(node.proto)
        f = specified or node.kernel

        def run(x):
            with np.errstate(over="ignore", invalid="ignore"):    # inf and NaN are the algorithms' values
                return f(x)
        return run

    def layer(self, p: NeuronParams, name: str):
        return _NumpyDelta(p, self.compiled)


class _NumpyDelta:
    """One delta layer in numpy: ``scan(a [N, ..., n], state) -> (s, r, state', per_row, changes_per_row)``
    with s, r [N, ..., n, 1] and the state r [..., n, 1] (None: r(0))."""

    def __init__(self, p: NeuronParams, compiled: bool):
        self.p, self.compiled = p, compiled

    def scan(self, a: np.ndarray, state):
        p = self.p
        r = np.broadcast_to(p.v0, a.shape[1:] + (1,)).astype(a.dtype) if state is None else state
        if self.compiled:
            return self._compiled(a, r)
        s_out, r_out = np.empty(a.shape + (1,), a.dtype), np.empty(a.shape + (1,), a.dtype)
        per_row, changes = np.zeros(len(a), np.int64), np.zeros(len(a), np.int64)
        for t in range(len(a)):
            s, r, k = delta_step(r, a[t], p)
            s_out[t], r_out[t] = s, r
            per_row[t], changes[t] = int(k.sum()), int(np.count_nonzero(k))
        return s_out, r_out, r, per_row, changes

    def _compiled(self, a: np.ndarray, r: np.ndarray):
        p, width = self.p, a[0].size
        flat = lambda x: np.ascontiguousarray(np.broadcast_to(x[..., 0], a.shape[1:]).reshape(width), a.dtype)
        dtype = a.dtype.type
        x = np.ascontiguousarray(a.reshape(len(a), width))
        state = flat(r).copy()
        s_out, r_out = np.empty_like(x), np.empty_like(x)
        per_row, changes = np.zeros(len(a), np.int64), np.zeros(len(a), np.int64)
        delta_scan(x, flat(p.bias), flat(p.theta_pos), flat(p.theta_neg), dtype(p.fire_fraction),
                   dtype(1 - p.fire_fraction), state, s_out, r_out, per_row, changes)
        shape = a.shape + (1,)
        return s_out.reshape(shape), r_out.reshape(shape), state.reshape(a.shape[1:] + (1,)), per_row, changes


def _delta_scan(a, bias, theta_pos, theta_neg, fraction, rest, r, s_out, r_out, per_row, changes):
    """``neuron.delta_step`` over the rows of a [N, n] in order, r [n] updated in place; the same float
    operations in the same order."""
    N, n = a.shape
    zero, one = a.dtype.type(0), a.dtype.type(1)
    for t in range(N):
        sent, units = 0, 0
        for j in range(n):
            u = (a[t, j] + bias[j]) - r[j]
            up, down = zero, zero
            if u >= fraction * theta_pos[j]:
                up = max(np.floor(u / theta_pos[j] + rest), one)
            if u <= -(fraction * theta_neg[j]):
                down = max(np.floor(-u / theta_neg[j] + rest), one)
            s = up * theta_pos[j] - down * theta_neg[j]
            r[j] = r[j] + s
            s_out[t, j], r_out[t, j] = s, r[j]
            k = int(up + down)
            sent += k
            units += 1 if k else 0
        per_row[t], changes[t] = sent, units


delta_scan = kernels.njit(cache=True, nogil=True)(_delta_scan) if kernels.available else _delta_scan


class StreamRuntime:
    """Executes a delta-coded artifact as a stream (module docstring) with ``ops`` (default numpy)."""

    def __init__(self, model: onnx.ModelProto, timesteps: int = 1, ops=None, block_rows: int = BLOCK_ROWS):
        if not is_delta(model):
            raise ArtifactError("not a delta-coded artifact (no IF node with coding 'delta')")
        self.model, self.timesteps, self.ops = model, int(timesteps), ops or NumpyStreamOps()
        self.block = int(block_rows)
        self.initializers = {t.name: _float64(numpy_helper.to_array(t)) for t in model.graph.initializer}
        self.output_names = [o.name for o in model.graph.output]
        self.output_types = {o.name: helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type)
                             for o in model.graph.output if o.type.tensor_type.elem_type}
        opsets = {o.domain or "": o.version for o in model.opset_import}
        self.nodes = [PlannedNode(p, False, opsets) for p in model.graph.node]
        self.params = {n.name: delta_params(n, self.initializers) for n in self.nodes if n.kind == spec.IF_OP}
        self.layers = {name: self.ops.layer(p, name) for name, p in self.params.items()}
        self.rows = row_inputs(model) or []
        backend = {k: self.ops.array(v) for k, v in self.initializers.items()}
        self.kernels = {id(n): self.ops.kernel(n, backend) for n in self.nodes if n.kind == "standard"}
        self._constants = backend

    blocks_itself = True        # ``SpikingNetwork`` hands it the whole stream (``network._block_rows``)

    def block_rows(self, dense_neurons: int) -> int:
        return self.block

    def run(self, inputs: dict[str, np.ndarray], timesteps: int | None = None) -> RunResult:
        """Stream the rows of ``inputs`` through the network, in their order; ``timesteps`` must be 1 (a
        point is one step)."""
        if timesteps not in (None, 1):
            raise ArtifactError(f"a delta-coded artifact runs one step per point; T = {timesteps} does not apply")
        total = {inputs[n].shape[0] for n in self.rows}
        if len(total) == 1 and total.pop() > self.block:
            blocks = chunks(len(inputs[self.rows[0]]), self.block)
        else:
            blocks = [slice(None)]
        states: dict[str, object] = {}
        rows: dict[str, tuple[list, list]] = {name: ([], []) for name in self.params}
        parts = [self._block({k: v[block] if k in self.rows else v for k, v in inputs.items()}, states, rows)
                 for block in blocks]
        spikes = {}
        for name, p in self.params.items():
            per_row, changes = (np.concatenate(x) for x in rows[name])
            spikes[name] = DeltaCounts(events=int(changes.sum() if p.graded else per_row.sum()),
                                       neurons=int(np.prod(p.theta_pos.shape)), batch=len(per_row), timesteps=1,
                                       changes=int(changes.sum()), graded=p.graded, per_row=per_row,
                                       changes_per_row=changes)
        outputs = {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k]
                   for k in self.output_names}
        return RunResult(outputs=outputs, spikes=spikes)

    def _block(self, feeds: dict, states: dict, rows: dict) -> dict[str, np.ndarray]:
        """Run one block of rows: ``states`` carries each delta layer's r across blocks, ``rows`` collects
        its events and sending units per row."""
        values = dict(self._constants)
        values.update({k: self.ops.array(_float64(np.asarray(v))) for k, v in feeds.items()})
        values[""] = None
        for n in self.nodes:
            if n.kind == spec.IF_OP:
                s, r, states[n.name], per_row, changes = self.layers[n.name].scan(
                    values[n.inputs[spec.IF_CURRENT]], states.get(n.name))
                values[n.outputs[spec.IF_SPIKES]] = s
                if len(n.outputs) > 1 and n.outputs[spec.IF_MEMBRANE_OUT]:
                    values[n.outputs[spec.IF_MEMBRANE_OUT]] = r
                rows[n.name][0].append(per_row)
                rows[n.name][1].append(changes)
            elif n.kind == spec.DECODE_OP:
                raise ArtifactError(f"node '{n.name}': a delta-coded artifact has no Decode (spec)")
            else:
                values.update(zip(n.outputs, self.kernels[id(n)]([values[i] for i in n.inputs])))
        return {k: _declared(self.ops.numpy(values[k]), self.output_types.get(k)) for k in self.output_names}


def _float64(a: np.ndarray) -> np.ndarray:
    """A floating array in float64 (exact from float16/32), any other unchanged."""
    return a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a


def _declared(y: np.ndarray, dtype) -> np.ndarray:
    """An output in its declared floating type (float64 rounded once, IEEE: the same in every runtime)."""
    if dtype is None or not np.issubdtype(y.dtype, np.floating) or not np.issubdtype(dtype, np.floating):
        return y
    return y.astype(dtype, copy=False)


def stream_runtime(backend: str, model: onnx.ModelProto, options: dict) -> StreamRuntime:
    """The ``StreamRuntime`` of ``backend`` ("numpy" or "snntorch"; ``options`` to its ops, e.g. the torch
    ``device``); onnxruntime does not run streams."""
    if backend == "numpy":
        return StreamRuntime(model, ops=NumpyStreamOps(**options))
    if backend == "snntorch":
        try:
            from .snntorch_stream import TorchStreamOps
        except ImportError as e:
            raise ArtifactError(f"backend 'snntorch' needs torch and snntorch: pip install torch snntorch "
                                f"({type(e).__name__}: {e})") from None
        return StreamRuntime(model, ops=TorchStreamOps(**options))
    raise ArtifactError(f"backend '{backend}' does not run delta-coded (streaming) artifacts; use numpy or snntorch")
