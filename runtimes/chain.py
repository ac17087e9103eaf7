"""A stage that is a plain chain of spiking layers, run as one compiled loop (``kernels.run_chain``).

The converter writes a spiking MLP as one stage of the numpy runtime (``numpy_ref``)::

    L_0 → MatMul(W_1) → L_1 → MatMul(W_2) → … → L_{m-1} [→ MatMul(W_m)] [→ Add(b)] → Decode

with every L_l a fused IF layer (``fusion``: the affine's bias, the IF node and its decode) whose current
is the previous MatMul's output, every W a constant matrix and b a constant vector; the first layer's
current is static (computed once, before the stage).  Between a layer and the next node may stand reshapes
(Reshape, Flatten, Squeeze, Unsqueeze, Transpose with constant operands: a spiking chain's links,
``onnx2snn.links``) that leave each point's values where they were ([N, n] → ... → [N, n], found by running
them on the positions 0..n-1 of one point): they change no value, so the loop skips them (a chain whose
first current is [N, n_0]).  A separable network's stage holds one such chain per
input axis (``find_chains``).  Each chain runs as one numba call per chunk of points: the T-step loop, the
layer steps and the matrix products (BLAS through ``np.dot``) with no Python in between.  Stepping the
interpreter instead costs a few microseconds of Python and numba dispatch per node and step, which forces
large blocks of points that leave the cache (poisson1d, one neuron per unit: ~1 ms of a ~9 ms step).

The arithmetic is the interpreter's, operation for operation: x_0 = z + b_0 once, each layer's
``advance_*`` kernel, z_{l+1} = W_{l+1}ᵀ·y_l (the interpreter computes the same product, ``ops._matmul``),
Σ_t (x_m + b), then / T.  A stage of any other form runs in the interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import kernels

REARRANGING = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose")

# Points per block (their state stays in cache through all T steps): BLOCK_ELEMENTS / the widest layer's
# units, within [MIN_BLOCK_ROWS, MAX_BLOCK_ROWS].  Measured, one thread, T = 32, ANN passes per step (or
# ms) at 64 / 96-128 / 256 / 512 points: poisson1d (width 100) one neuron per unit 5.5 / 5.7-7.0 / – / 7.6 ms,
# default 16.0 / 16.0-19.1 / – / 22.2 ms; burgers (width 40) default 5.07 / 4.69-4.83 / 4.99 / –;
# torch_tanh_gemm (width 16) one neuron 0.84 / 0.70 / 0.64 / 0.64, default 5.09 / 4.62 / 3.72 / 3.80.
BLOCK_ELEMENTS = 4096
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 64, 1024


@dataclass
class Chain:
    """A stage of the chain form above: the fused layers (``numpy_ref._FusedNode``), the matrices between
    them and after the last (``output_weight``, or None), the output bias (or None), the Decode node."""

    layers: list
    weights: list[np.ndarray]
    output_weight: np.ndarray | None
    output_bias: np.ndarray | None
    decode: object
    rearranged: bool = False            # reshapes skipped: the first current must be [N, n_0]
    _prepared: dict = field(default_factory=dict)

    @property
    def matrices(self) -> list[np.ndarray]:
        """The matrices in order: those between the layers, then the output matrix if any."""
        return self.weights + ([self.output_weight] if self.output_weight is not None else [])

    @property
    def block_rows(self) -> int:
        """Points per block: ``BLOCK_ELEMENTS`` over the widest layer, clipped (see above)."""
        widest = max(layer.layer.params.theta_pos.shape[0] for layer in self.layers)
        return min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, BLOCK_ELEMENTS // widest))

    def ready(self, values: dict) -> bool:
        """Whether the compiled loop applies to the stage's first current in ``values`` (numba installed,
        one dtype throughout, a current [..., n_0] or [..., 1])."""
        z = values[self.layers[0].inputs[0]]
        return self._arguments(z.dtype) is not None and z.ndim > 0 \
            and z.shape[-1] in (1, self.layers[0].compact(z.dtype).n) and (z.ndim == 2 or not self.rearranged)

    def run(self, values: dict, timesteps: int, spikes: dict, counts) -> None:
        """Run the stage on ``values`` (``ready``; the Decode's output written there; spike counts into
        ``spikes``, ``counts()`` making a new ``SpikeCounts``)."""
        z = values[self.layers[0].inputs[0]]
        compact = [layer.compact(z.dtype) for layer in self.layers]
        arguments = self._arguments(z.dtype)
        points, T = z.shape[:-1], int(timesteps)          # any leading axes: every MatMul acts row by row
        x0 = compact[0].unit_rows(z, self.layers[0].layer.bias(z.dtype))    # F-ordered [N, n_0]
        N, n_out = x0.shape[0], arguments[-1].shape[0]
        total = np.zeros((n_out, N), z.dtype)
        events = np.zeros(len(compact), np.int64)
        kernels.run_chain(x0.T, T, self.block_rows, *arguments[:-1], total, events)
        values[self.decode.outputs[0]] = (total.T / np.asarray(T, z.dtype)).reshape(points + (n_out,))
        for layer, c, count in zip(self.layers, compact, events):
            record = spikes.setdefault(layer.name, counts())
            record.events += int(count)
            record.neurons, record.batch, record.timesteps = c.M, N, T

    def _arguments(self, dtype) -> tuple | None:
        """``kernels.run_chain``'s per-layer arguments for ``dtype`` (cached), then an empty [n_out, 0]
        array giving the output width; None where the compiled loop does not apply."""
        if dtype not in self._prepared:
            matrices = self.matrices
            if not kernels.available or any(w.dtype != dtype for w in matrices) \
                    or (self.output_bias is not None and self.output_bias.dtype != dtype):
                self._prepared[dtype] = None
                return None
            compact = [layer.compact(dtype) for layer in self.layers]
            transposed = [w.T for w in matrices]
            if self.output_weight is None:
                transposed.append(np.empty((compact[-1].n, 0), dtype))    # never read
            biases = [layer.layer.bias(dtype) for layer in self.layers[1:]]     # the first is added to x_0
            pre_biases = [np.zeros(c.n, dtype) if b is None else b for b, c in zip([None] + biases, compact)]
            n_out = transposed[-1].shape[0] if self.output_weight is not None else compact[-1].n
            out_bias = np.zeros(n_out, dtype) if self.output_bias is None else self.output_bias
            each = lambda arrays: tuple(np.require(a, requirements="CW") for a in arrays)   # numba: one type
            self._prepared[dtype] = (
                each(c._packed for c in compact), each(c.offset for c in compact), each(c.first for c in compact),
                each(pre_biases), each(c.v0 for c in compact), np.array([c._one_per_unit for c in compact]),
                each(transposed), self.output_weight is not None, np.require(out_bias, requirements="CW"),
                self.output_bias is not None, np.empty((n_out, 0), dtype))
        return self._prepared[dtype]


def find_chains(stage: list, initializers: dict[str, np.ndarray]) -> list[Chain] | None:
    """The stage as independent chains, one per connected part of its dataflow (a separable network's
    stage holds one MLP per input axis, their nodes interleaved), or None unless every part is a chain."""
    part = list(range(len(stage)))          # union-find over the stage's nodes, joined by the tensors they pass

    def root(k: int) -> int:
        while part[k] != k:
            part[k] = part[part[k]]
            k = part[k]
        return k

    producer = {name: k for k, node in enumerate(stage) for name in node.outputs if name}
    for k, node in enumerate(stage):
        for name in node.inputs:
            if name in producer:
                part[root(k)] = root(producer[name])
    parts: dict[int, list] = {}
    for k, node in enumerate(stage):
        parts.setdefault(root(k), []).append(node)
    chains = [find_chain(nodes, initializers) for nodes in parts.values()]
    return None if not chains or any(c is None for c in chains) else chains


def find_chain(stage: list, initializers: dict[str, np.ndarray]) -> Chain | None:
    """The stage as a ``Chain``, or None if it is not exactly of that form (node kinds: "fused" for a
    fused layer, "standard" with ``proto`` for MatMul/Add, the Decode's ``kind`` from ``spec``)."""
    if not stage or stage[0].kind != "fused" or stage[-1].kind != "Decode":
        return None
    layers, weights, output_weight, output_bias = [stage[0]], [], None, None
    current = stage[0].outputs[0]
    positions, rearranged = None, False     # where the reshapes since the last layer put a point's values
    k = 1
    while k < len(stage) - 1:
        n = stage[k]
        if n.kind == "standard" and n.proto.op_type in REARRANGING and n.inputs[0] == current:
            if positions is None:
                positions = np.arange(layers[-1].layer.params.theta_pos.shape[0])[None, :]
            positions = _rearranged(n, positions, initializers)
            if positions is None:
                return None
            current, k, rearranged = n.outputs[0], k + 1, True
            continue
        if positions is not None and not _in_place(positions):
            return None
        positions = None
        if n.kind == "standard" and n.proto.op_type == "MatMul" and output_weight is None \
                and n.inputs[0] == current and _matrix(initializers.get(n.inputs[1])):
            w = initializers[n.inputs[1]]
            nxt = stage[k + 1] if k + 1 < len(stage) - 1 else None
            if nxt is not None and nxt.kind == "fused" and nxt.inputs[0] == n.outputs[0]:
                weights.append(w)
                layers.append(nxt)
                current, k = nxt.outputs[0], k + 2
                continue
            output_weight, current, k = w, n.outputs[0], k + 1
            continue
        if n.kind == "standard" and n.proto.op_type == "Add" and k == len(stage) - 2 and output_bias is None:
            other = [i for i in n.inputs if i != current]
            b = initializers.get(other[0]) if len(other) == 1 and current in n.inputs else None
            if b is None or np.ndim(b) > 1:
                return None
            output_bias, current, k = b, n.outputs[0], k + 1
            continue
        return None
    if stage[-1].inputs[0] != current or (positions is not None and not _in_place(positions)):
        return None
    sizes = [layer.layer.params.theta_pos.shape[0] for layer in layers]
    if any(w.shape != (a, b) for w, a, b in zip(weights, sizes, sizes[1:])) \
            or (output_weight is not None and output_weight.shape[0] != sizes[-1]):
        return None
    n_out = output_weight.shape[1] if output_weight is not None else sizes[-1]
    if output_bias is not None and np.size(output_bias) not in (1, n_out):
        return None
    if output_bias is not None and np.size(output_bias) == 1:
        output_bias = np.full(n_out, np.ravel(output_bias)[0], np.asarray(output_bias).dtype)
    return Chain(layers, weights, output_weight, output_bias, stage[-1], rearranged)


def _rearranged(n, positions: np.ndarray, initializers: dict[str, np.ndarray]) -> np.ndarray | None:
    """The positions after reshape node ``n`` (its other inputs constants), or None if it cannot run on one
    point's positions."""
    if any(i and i not in initializers for i in n.inputs[1:]):
        return None
    try:
        return n.kernel([positions] + [initializers[i] if i else None for i in n.inputs[1:]])[0]
    except Exception:  # noqa: BLE001 - onnx.reference's errors: a reshape that does not fit one point
        return None


def _in_place(positions: np.ndarray) -> bool:
    """Whether one point's values [1, n] are back in their places 0..n-1."""
    return positions.ndim == 2 and positions.shape[0] == 1 and np.array_equal(positions[0],
                                                                               np.arange(positions.shape[1]))


def _matrix(w) -> bool:
    return w is not None and np.ndim(w) == 2

