"""The numpy reference runtime: executes an artifact exactly as ``spec`` defines it.

Execution alternates two kinds of work until every output is known:

* static nodes (no dependence on an IF output, or only through a Decode) run once, on analog values;
* a *stage* (every step node whose static inputs are known) runs for T steps: IF nodes carry their
  membrane from step to step, and each Decode accumulates (1/T)·Σ_t x(t).

A chain fed by another chain's decoded output therefore forms a later stage (it is re-encoded directly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from . import spec
from .compact import CompactLayer
from .errors import ArtifactError
from .fusion import FusedLayer, find_fusable
from .neuron import fire
from .ops import make_kernel


@dataclass
class SpikeCounts:
    """Spike statistics of one IF node over a run: ``events`` non-zero spikes in total, over
    ``neurons`` neurons (padding excluded) × ``timesteps`` × ``batch`` points."""

    events: int = 0
    neurons: int = 0
    batch: int = 0
    timesteps: int = 0

    @property
    def rate(self) -> float:
        denominator = self.neurons * self.batch * self.timesteps
        return self.events / denominator if denominator else 0.0


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    spikes: dict[str, SpikeCounts] = field(default_factory=dict)   # by IF node name


class _Node:
    """A node prepared for execution: its kernel and whether it is time-stepped."""

    def __init__(self, proto: onnx.NodeProto, opsets: dict[str, int], step: bool):
        self.proto, self.step = proto, step
        self.name = proto.name or proto.output[0]
        self.inputs, self.outputs = list(proto.input), list(proto.output)
        self.kind = proto.op_type if proto.domain == spec.DOMAIN else "standard"
        if proto.domain == spec.DOMAIN and proto.op_type not in (spec.IF_OP, spec.DECODE_OP):
            raise ArtifactError(f"node '{self.name}': unknown op {spec.DOMAIN}.{proto.op_type}")
        if self.kind == spec.IF_OP:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}
            self.signed = bool(attrs.get("signed", 1))
            self.fire_fraction = float(attrs.get("fire_fraction", 0.5))
        elif self.kind == "standard":
            self.kernel = make_kernel(proto, opsets)


class _FusedNode:
    """An IF layer with its decode ops, run as one ``CompactLayer`` (see ``fusion``)."""

    kind, step = "fused", True

    def __init__(self, layer: FusedLayer, initializers: dict):
        self.layer, self.name = layer, layer.name
        self.inputs, self.outputs = [layer.current], [layer.output]
        self._compact: dict = {}

    def compact(self, dtype) -> CompactLayer:
        if dtype not in self._compact:
            self._compact[dtype] = self.layer.compact(dtype)
        return self._compact[dtype]


class NumpyRuntime:
    """Executes an artifact (``onnx.ModelProto``) with numpy; see the module docstring."""

    def __init__(self, model: onnx.ModelProto, timesteps: int):
        self.model, self.timesteps = model, int(timesteps)
        graph = model.graph
        self.input_names = [i.name for i in graph.input]
        self.initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.input_names = [n for n in self.input_names if n not in self.initializers]
        self.output_names = [o.name for o in graph.output]
        opsets = {o.domain or "": o.version for o in model.opset_import}
        protos = list(graph.node)
        step_tensors = _step_tensors(protos)
        fused = {id(f.nodes[0]): f for f in find_fusable(protos, self.initializers, set(self.output_names))}
        absorbed = {id(n) for f in fused.values() for n in f.nodes[1:]}
        self.nodes = [_FusedNode(fused[id(p)], self.initializers) if id(p) in fused
                      else _Node(p, opsets, step=_is_step(p, step_tensors)) for p in protos if id(p) not in absorbed]

    def run(self, inputs: dict[str, np.ndarray], timesteps: int | None = None) -> RunResult:
        T = int(timesteps or self.timesteps)
        if T <= 0:
            raise ArtifactError(f"timesteps must be positive, got {T}")
        values: dict[str, np.ndarray | None] = dict(self.initializers)
        values.update(inputs)
        values[""] = None
        pending = list(self.nodes)
        result = RunResult(outputs={})
        while pending:
            done = [n for n in pending if not n.step and _ready(n, values)]
            for node in done:
                self._run_static(node, values)
            stage = _stage(pending, values)
            if stage:
                self._run_stage(stage, values, T, result.spikes)
            if not done and not stage:
                missing = sorted({i for n in pending for i in n.inputs if i not in values
                                  and not any(i in m.outputs for m in pending)})
                raise ArtifactError(f"node '{pending[0].name}' cannot run: missing inputs {missing}")
            finished = set(map(id, done + stage))
            pending = [n for n in pending if id(n) not in finished]
        result.outputs = {name: values[name] for name in self.output_names}
        return result

    def _run_static(self, node: _Node, values: dict) -> None:
        if node.kind == spec.DECODE_OP:   # a Decode of a static tensor: the mean of a constant
            values[node.outputs[0]] = values[node.inputs[0]]
            return
        if node.kind == spec.IF_OP:       # unreachable: IF is always a step node
            raise ArtifactError(f"node '{node.name}': IF outside a stage")
        outs = node.kernel([values[i] for i in node.inputs])
        values.update(zip(node.outputs, outs))

    def _run_stage(self, stage: list[_Node], values: dict, T: int, spikes: dict) -> None:
        local = dict(values)
        membrane = {id(n): values[n.inputs[spec.IF_MEMBRANE]] for n in stage if n.kind == spec.IF_OP}
        sums: dict[int, np.ndarray] = {}
        fused = {}     # per fused node: (compact layer, membrane [rows, M], constant drive or None, shape)
        for n in stage:
            if n.kind == "fused":
                fused[id(n)] = None            # built at the first step, when the current's shape is known
                spikes.setdefault(n.name, SpikeCounts())
            if n.kind == spec.IF_OP:
                live = np.isfinite(values[n.inputs[spec.IF_THETA_POS]])
                if n.signed:
                    live = live | np.isfinite(values[n.inputs[spec.IF_THETA_NEG]])
                spikes.setdefault(n.name, SpikeCounts(neurons=int(live.sum())))
        for _ in range(T):
            for n in stage:
                if n.kind == "fused":
                    z = local[n.inputs[0]]
                    if fused[id(n)] is None:
                        compact = n.compact(z.dtype)
                        rows = z.reshape(-1, z.shape[-1])
                        static = n.inputs[0] in values
                        fused[id(n)] = (compact, compact.initial_membrane(rows.shape[0]),
                                        compact.drive(rows) if static else None, z.shape)
                        spikes[n.name].neurons = compact.M
                    compact, v, drive, shape = fused[id(n)]
                    s = compact.step(v, drive if drive is not None else compact.drive(z.reshape(-1, shape[-1])))
                    spikes[n.name].events += int(np.count_nonzero(s))
                    local[n.outputs[0]] = compact.decode(s).reshape(shape)
                elif n.kind == spec.IF_OP:
                    z = local[n.inputs[spec.IF_CURRENT]]
                    u = membrane[id(n)] + (z[..., None] + local[n.inputs[spec.IF_BIAS]])
                    s, membrane[id(n)] = fire(u, local[n.inputs[spec.IF_THETA_POS]],
                                              local[n.inputs[spec.IF_THETA_NEG]], n.signed, n.fire_fraction)
                    local[n.outputs[spec.IF_SPIKES]] = s
                    if len(n.outputs) > 1 and n.outputs[spec.IF_MEMBRANE_OUT]:
                        local[n.outputs[spec.IF_MEMBRANE_OUT]] = membrane[id(n)]
                    spikes[n.name].events += int(np.count_nonzero(s))
                elif n.kind == spec.DECODE_OP:
                    x = local[n.inputs[0]]
                    sums[id(n)] = x.copy() if id(n) not in sums else sums[id(n)] + x
                else:
                    local.update(zip(n.outputs, n.kernel([local[i] for i in n.inputs])))
        for n in stage:
            if n.kind == spec.DECODE_OP:
                values[n.outputs[0]] = sums[id(n)] / np.asarray(T, sums[id(n)].dtype)
            elif n.kind == "fused":
                count = spikes[n.name]
                count.batch = int(np.prod(fused[id(n)][3][:-1], dtype=np.int64))
                count.timesteps = T
            elif n.kind == spec.IF_OP:
                count = spikes[n.name]
                count.batch = int(np.prod(local[n.inputs[spec.IF_CURRENT]].shape[:-1], dtype=np.int64))
                count.timesteps = T


def _step_tensors(nodes: list[onnx.NodeProto]) -> set[str]:
    """Tensors that depend on an IF output other than through a Decode (nodes in topological order)."""
    step: set[str] = set()
    for node in nodes:
        if node.domain == spec.DOMAIN and node.op_type == spec.DECODE_OP:
            continue
        if (node.domain == spec.DOMAIN and node.op_type == spec.IF_OP) or any(i in step for i in node.input):
            step.update(o for o in node.output if o)
    return step


def _is_step(node: onnx.NodeProto, step_tensors: set[str]) -> bool:
    custom = node.domain == spec.DOMAIN
    return (custom and node.op_type == spec.IF_OP) or any(i in step_tensors for i in node.input) \
        or (custom and node.op_type == spec.DECODE_OP and node.input[0] in step_tensors)


def _ready(node: _Node, values: dict) -> bool:
    return all(i in values for i in node.inputs)


def _stage(pending: list[_Node], values: dict) -> list[_Node]:
    """Step nodes (in topological order) all of whose static inputs are known."""
    produced: set[str] = set()
    stage = []
    for n in pending:
        if not n.step:
            continue
        needed = [i for k, i in enumerate(n.inputs)
                  if not (n.kind == spec.IF_OP and k == spec.IF_MEMBRANE)]
        if all(i in values or i in produced for i in needed):
            stage.append(n)
            produced.update(n.outputs)
    return stage
