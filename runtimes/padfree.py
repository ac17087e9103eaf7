"""Padding-free execution of an IF layer and its decode (a backend optimisation, exact for the spikes).

The converter writes every spiking layer as ``IF → Mul(w) → ReduceSum(axis -1, keepdims 0)`` over a
dense [n, K] block of neurons, where units that need fewer than K pieces are padded with neurons of
θ = inf, which never fire.  For the default (piecewise-linear) conversion most of the block can be
padding.  A padding neuron only ever contributes 0·w = 0 to its unit's sum, so a backend may drop it:
group the units by their number of live neurons, rounded up to a power of two k (at most K: a few padding
neurons stay, so that a layer has at most log2(K) + 1 groups; a unit with no live neuron keeps one padding
neuron in the k = 1 group).  The groups' [n_k, k] blocks, flattened row-major and concatenated, form one
flat layer of M' = Σ n_k·k neurons, each fed by its own unit's current, which a backend runs as a layer
of M' units with one neuron each::

    x = z[..., neuron_units]                      (gather: each neuron's unit current)  [..., M']
    s, v = IF(x; flat(v0), flat(β), flat(θ±))     (the same neurons, the same arithmetic, the same spikes)
    y[..., units_k] = Σ_k (flat(w)·s)[group k viewed as [..., n_k, k]]     (the decode, per group)

The padding kept in a group still never fires and adds 0·w.  The spikes and the event counts are exactly
those of the dense layer; the decoded sum differs from numpy's only by the order of the (now shorter)
sum.  Every neuron op is one op on the whole flat layer with a per-neuron parameter (a plain broadcast);
only the decode's sum runs per group, and nothing is scattered.  The onnxruntime and snnTorch backends keep
the points along the last axis, [M', P], so that the gather copies rows (one per neuron) rather than
single elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from . import spec
from .schedule import if_coding
from .neuron import live_mask

# Go padding-free when at most this fraction of a layer's neurons are live (above it the per-group
# overhead outweighs the saving, measured with torch and onnxruntime); never for K = 1.
PADFREE_BELOW = 0.5


@dataclass
class Group:
    """Units with at most ``k`` live neurons: ``units`` [n_k], per unit ``slots`` [n_k, k] of the dense
    block (its live neurons first, then padding)."""

    k: int
    units: np.ndarray
    slots: np.ndarray

    def gather(self, array: np.ndarray) -> np.ndarray:
        """The group's [n_k, k] block of a per-neuron [n, K] array."""
        return np.ascontiguousarray(np.asarray(array)[self.units[:, None], self.slots])


@dataclass
class PadFreeLayer:
    """An IF node whose spikes feed only ``Mul(w) → ReduceSum(-1)``: the nodes it replaces, the groups of
    live neurons (every unit in exactly one) and the IF's tensors [n, K] by input role."""

    if_node: str
    mul_node: str
    reduce_node: str
    output: str
    weight: np.ndarray
    groups: list[Group]
    live: int
    tensors: dict[str, np.ndarray]      # v0, bias, theta_pos, theta_neg

    @property
    def order(self) -> np.ndarray:
        """Unit order of the groups' decoded values concatenated; ``inverse`` maps it back to 0..n-1."""
        return np.concatenate([g.units for g in self.groups]).astype(np.int64)

    @property
    def neuron_units(self) -> np.ndarray:
        """The unit of each neuron of the flat layer [M'] (whose current it reads)."""
        return np.concatenate([np.repeat(g.units, g.k) for g in self.groups]).astype(np.int64)

    @property
    def sizes(self) -> list[int]:
        """Neurons per group in the flat layer, n_k·k, in order."""
        return [len(g.units) * g.k for g in self.groups]

    def flat(self, array: np.ndarray) -> np.ndarray:
        """A per-neuron [n, K] array in the flat layout, as a column [M', 1] (M' units, one neuron each)."""
        return np.concatenate([g.gather(array).ravel() for g in self.groups])[:, None]

    @property
    def inverse(self) -> np.ndarray:
        return np.argsort(self.order).astype(np.int64)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def find_padfree_layers(nodes: list[onnx.NodeProto], initializers: dict[str, np.ndarray],
                        graph_outputs: set[str], opset: int) -> dict[str, PadFreeLayer]:
    """The IF nodes of ``nodes`` (the whole graph) that can run padding-free, by IF node name.

    Conditions: the neuron tensors (v0 [n, K], β, θ+, θ-) are initializers; K > 1 and at most
    ``PADFREE_BELOW`` of the neurons are live (θ+ finite, or θ- finite for a signed node); the spikes are
    read only by a ``Mul`` with a finite [n, K] initializer, whose product is read only by a ``ReduceSum``
    over axis -1 with keepdims = 0; the membrane output is read by nobody; none of these is a graph
    output."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in set(node.input):
            if name:
                readers.setdefault(name, []).append(node)
    found = {}
    for node in nodes:
        if node.domain != spec.DOMAIN or node.op_type != spec.IF_OP or if_coding(node) != spec.CODING_RATE:
            continue
        params = [initializers.get(node.input[k]) for k in
                  (spec.IF_MEMBRANE, spec.IF_BIAS, spec.IF_THETA_POS, spec.IF_THETA_NEG)]
        if any(p is None for p in params):
            continue
        v0, bias, theta_pos, theta_neg = params
        if theta_pos.ndim != 2 or any(np.shape(p) != theta_pos.shape for p in (v0, bias, theta_neg)):
            continue
        n, K = theta_pos.shape
        signed = bool(_attrs(node).get("signed", 1))
        live = live_mask(theta_pos, theta_neg, signed)
        if K <= 1 or live.sum() > PADFREE_BELOW * live.size:
            continue
        spikes = node.output[spec.IF_SPIKES]
        membrane = node.output[spec.IF_MEMBRANE_OUT] if len(node.output) > 1 else ""
        if membrane and (membrane in readers or membrane in graph_outputs):
            continue
        mul = readers.get(spikes, [])
        if len(mul) != 1 or mul[0].op_type != "Mul" or mul[0].domain not in ("", "ai.onnx") or spikes in graph_outputs:
            continue
        mul = mul[0]
        other = [i for i in mul.input if i != spikes]
        weight = initializers.get(other[0]) if len(other) == 1 else None
        if weight is None or np.shape(weight) != (n, K) or not np.all(np.isfinite(weight)):
            continue
        reduce = readers.get(mul.output[0], [])
        if len(reduce) != 1 or reduce[0].op_type != "ReduceSum" or mul.output[0] in graph_outputs:
            continue
        reduce = reduce[0]
        at = _attrs(reduce)
        if opset < 13:
            axes = list(at.get("axes", []))
        else:
            axes = [int(a) for a in np.ravel(initializers[reduce.input[1]])] \
                if len(reduce.input) > 1 and reduce.input[1] in initializers else None
        if axes != [-1] or at.get("keepdims", 1) != 0:
            continue
        groups = []
        counts = live.sum(axis=1)
        width = np.array([min(1 << max(int(k) - 1, 0).bit_length(), K) for k in counts])
        for k in sorted(set(width.tolist())):
            units = np.flatnonzero(width == k)
            slots = np.array([np.concatenate([np.flatnonzero(live[u]), np.flatnonzero(~live[u])])[:k] for u in units],
                             dtype=np.int64).reshape(len(units), k)
            groups.append(Group(k=k, units=units.astype(np.int64), slots=slots))
        found[node.name or node.output[0]] = PadFreeLayer(
            if_node=node.name or node.output[0], mul_node=mul.name or mul.output[0],
            reduce_node=reduce.name or reduce.output[0], output=reduce.output[0], weight=np.asarray(weight),
            groups=groups, live=int(live.sum()),
            tensors={"v0": np.asarray(v0), "bias": np.asarray(bias), "theta_pos": np.asarray(theta_pos),
                     "theta_neg": np.asarray(theta_neg)})
    return found
