"""A discrete-time executor of NIR graphs (the ``nir`` package's ``NIRGraph``), in numpy.

This is the semantics onnx2snn's NIR exports (``onnx2snn.nir_export``) are written for.  Time is
discrete, t = 1..T (dt = 1, one call of ``step`` each).  Every node maps its input x(t) — the sum of the
values on its incoming edges — to an output y(t), per point of a batch (x [batch, d], W [out, in])::

    Input       y(t) = the graph input, given per step (a static input: the same value at every step)
    Affine      y(t) = W·x(t) + b
    Linear      y(t) = W·x(t)
    Scale       y(t) = s ⊙ x(t)
    I           v(t) = v(t-1) + r ⊙ x(t);  y(t) = v(t)                                   v(0) = 0
    Threshold   y(t) = 1 where x(t) > θ, else 0
    IF          u = v(t-1) + r ⊙ x(t);  y(t) = 1 where u > θ, else 0;
                v(t) = v_reset where y(t) = 1, else u                                    v(0) = 0
    Output      y(t) = x(t)

An edge carries its source's output of the same step, except a *back edge*, which carries the source's
output of the previous step (zero at t = 1).  The back edges are those that close a cycle in a depth-first
traversal from the Input nodes (in the graph's node order), following each node's outgoing edges in the
graph's edge order; nodes are evaluated in a topological order of the other (forward) edges.  An onnx2snn
export has one back edge per spiking layer, the reset into its integrator, which nirtorch (2.6) also
treats as the previous step's value.

NIR defines the IF reset as v = v_reset; several consumers (sinabs, spyx) subtract the threshold instead.
``NirExecutor(graph, if_reset="subtract")`` runs that reading: v(t) = u - v_threshold where y(t) = 1.
``if_reset="sinabs"`` runs sinabs's IAF with one spike per step (``runtimes.nir_sinabs``): y(t) = 1 where
u >= θ, v(t) = max(u - θ·y(t), -θ) (its membrane floor min_v_mem = -θ).
Other node types (LIF, CubaLIF, convolutions, sub-graphs, ...) are
refused with an ``ArtifactError`` naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ArtifactError

STATELESS = ("Input", "Output", "Affine", "Linear", "Scale", "Threshold")
STATEFUL = ("I", "IF")
SPIKING = ("Threshold", "IF")
IF_RESETS = ("value", "subtract", "sinabs")


@dataclass
class NirRun:
    """``outputs``: per Output node the mean over T of its per-step values [batch, d]; ``spikes``: per
    spiking node (Threshold, IF) its events over the run (all points, all steps)."""

    outputs: dict[str, np.ndarray]
    spikes: dict[str, int] = field(default_factory=dict)


class NirExecutor:
    """Runs a ``nir.NIRGraph`` step by step (semantics in the module docstring), in ``dtype``; ``if_reset``
    "value" (NIR's IF), "subtract" or "sinabs"."""

    def __init__(self, graph, dtype=np.float64, if_reset: str = "value"):
        if if_reset not in IF_RESETS:
            raise ArtifactError(f"unknown IF reset {if_reset!r}; use {' or '.join(IF_RESETS)}")
        self.graph, self.dtype, self.if_reset = graph, np.dtype(dtype), if_reset
        self.kinds = {}
        for name, node in graph.nodes.items():
            kind = type(node).__name__
            if kind not in STATELESS + STATEFUL:
                raise ArtifactError(f"NIR node '{name}': type {kind} is not run by the onnx2snn NIR executor "
                                    f"(it runs {', '.join(STATELESS + STATEFUL)})")
            self.kinds[name] = kind
        self.back = back_edges(graph)
        self.incoming: dict[str, list[tuple[str, bool]]] = {name: [] for name in graph.nodes}
        for src, dst in graph.edges:
            self.incoming[dst].append((src, (src, dst) in self.back))
        self.order = _forward_order(graph, self.back)
        self.params = {name: {k: np.asarray(v, self.dtype) for k, v in _parameters(node).items()}
                       for name, node in graph.nodes.items()}
        self.reset()

    @property
    def input_names(self) -> list[str]:
        return [name for name, kind in self.kinds.items() if kind == "Input"]

    @property
    def output_names(self) -> list[str]:
        return [name for name, kind in self.kinds.items() if kind == "Output"]

    def reset(self) -> None:
        """Back to t = 0: zero membranes, zero back-edge values."""
        self.state: dict[str, np.ndarray] = {}
        self.previous: dict[str, np.ndarray] = {}

    def step(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One step: ``inputs`` by Input node name ([batch, d]); returns every node's output of this step."""
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ArtifactError(f"NIR graph: no value for input node(s) {missing}")
        out: dict[str, np.ndarray] = {}
        batch = next(iter(np.shape(v)[0] for v in inputs.values()))
        for name in self.order:
            kind, p = self.kinds[name], self.params[name]
            if kind == "Input":
                out[name] = np.asarray(inputs[name], self.dtype)
                continue
            x = None
            for src, back in self.incoming[name]:
                value = self.previous.get(src) if back else out[src]
                if value is not None:
                    x = value if x is None else x + value
            if x is None:
                x = np.zeros((batch,) + _width(self.graph.nodes[name]), self.dtype)
            out[name] = self._apply(name, kind, p, x)
        self.previous = {src: out[src] for src, _ in self.back}
        return out

    def _apply(self, name: str, kind: str, p: dict, x: np.ndarray) -> np.ndarray:
        if kind == "Output":
            return x
        if kind == "Affine":
            return x @ p["weight"].T + p["bias"]
        if kind == "Linear":
            return x @ p["weight"].T
        if kind == "Scale":
            return x * p["scale"]
        if kind == "Threshold":
            return (x > p["threshold"]).astype(self.dtype)
        v = self.state.get(name)
        u = p["r"] * x if v is None else v + p["r"] * x
        if kind == "I":
            self.state[name] = u
            return u
        theta = p["v_threshold"]
        if self.if_reset == "sinabs":
            fired = u >= theta
            self.state[name] = np.maximum(np.where(fired, u - theta, u), -theta)
        else:
            fired = u > theta
            self.state[name] = np.where(fired, u - theta if self.if_reset == "subtract" else p["v_reset"], u)
        return fired.astype(self.dtype)

    def run(self, inputs: dict[str, np.ndarray], timesteps: int) -> NirRun:
        """T steps from rest on static ``inputs``: the Output nodes' means over T and the spike counts."""
        if timesteps <= 0:
            raise ArtifactError(f"timesteps must be positive, got {timesteps}")
        self.reset()
        sums: dict[str, np.ndarray] = {}
        spikes = {name: 0 for name, kind in self.kinds.items() if kind in SPIKING}
        for _ in range(timesteps):
            out = self.step(inputs)
            for name in self.output_names:
                sums[name] = out[name] if name not in sums else sums[name] + out[name]
            for name in spikes:
                spikes[name] += int(np.count_nonzero(out[name]))
        return NirRun({name: s / timesteps for name, s in sums.items()}, spikes)


def back_edges(graph) -> set[tuple[str, str]]:
    """The edges closing a cycle in a depth-first traversal from the Input nodes (module docstring)."""
    outgoing: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        outgoing[src].append(dst)
    back, state = set(), {}             # state: 1 on the traversal's path, 2 finished
    roots = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
    roots += [n for n in graph.nodes if n not in roots]           # nodes no input reaches, last
    for root in roots:
        if root in state:
            continue
        stack = [(root, iter(outgoing[root]))]
        state[root] = 1
        while stack:
            node, successors = stack[-1]
            nxt = next(successors, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(outgoing[nxt])))
    return back


def _forward_order(graph, back: set[tuple[str, str]]) -> list[str]:
    """A topological order of the nodes along the forward edges (Kahn, stable in node order)."""
    indegree = {name: 0 for name in graph.nodes}
    outgoing: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for edge in graph.edges:
        if tuple(edge) not in back:
            indegree[edge[1]] += 1
            outgoing[edge[0]].append(edge[1])
    ready = [name for name in graph.nodes if indegree[name] == 0]
    order = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for dst in outgoing[name]:
            indegree[dst] -= 1
            if indegree[dst] == 0:
                ready.append(dst)
    return order


def _parameters(node) -> dict[str, np.ndarray]:
    """The node's parameters by name; an IF without ``v_reset`` (nir <= 1.0.4 has none) resets to 0."""
    names = {"Affine": ("weight", "bias"), "Linear": ("weight",), "Scale": ("scale",), "Threshold": ("threshold",),
             "I": ("r",), "IF": ("r", "v_threshold")}.get(type(node).__name__, ())
    params = {k: getattr(node, k) for k in names}
    if type(node).__name__ == "IF":
        params["v_reset"] = getattr(node, "v_reset", np.zeros_like(node.v_threshold))
    return params


def _width(node) -> tuple[int, ...]:
    """The per-point input shape of a node (for a node none of whose inputs has a value yet)."""
    shape = node.input_type.get("input") if node.input_type else None
    return tuple(int(d) for d in np.ravel(shape)) if shape is not None else ()
