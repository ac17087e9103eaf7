"""The numpy reference runtime: executes an artifact exactly as ``spec`` defines it.

Execution (order from ``schedule``) alternates two kinds of work until every output is known:

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

from . import kernels, spec
from .chain import find_chains
from .compact import CompactLayer
from .errors import ArtifactError
from .fusion import FusedLayer, find_fusable
from .neuron import NeuronParams, if_step, live_mask, phase_step
from .schedule import PlannedNode, run_static, schedule


@dataclass
class SpikeCounts:
    """Spike statistics of one IF node over a run: ``events`` non-zero spikes in total, over
    ``neurons`` neurons (padding excluded) × ``timesteps`` × ``batch`` points; ``per_neuron``, when asked
    for (``NumpyRuntime.run(per_neuron=True)``), the events of each live neuron [neurons] in row-major
    (unit, slot) order."""

    events: int = 0
    neurons: int = 0
    batch: int = 0
    timesteps: int = 0
    per_neuron: np.ndarray | None = None

    @property
    def rate(self) -> float:
        denominator = self.neurons * self.batch * self.timesteps
        return self.events / denominator if denominator else 0.0


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    spikes: dict[str, SpikeCounts] = field(default_factory=dict)   # by IF node name


def params(n: PlannedNode, values: dict) -> NeuronParams:
    """The neuron parameters of IF node ``n`` from the tensors in ``values``."""
    return NeuronParams(bias=values[n.inputs[spec.IF_BIAS]], theta_pos=values[n.inputs[spec.IF_THETA_POS]],
                        theta_neg=values[n.inputs[spec.IF_THETA_NEG]], v0=values[n.inputs[spec.IF_MEMBRANE]],
                        signed=n.signed, fire_fraction=n.fire_fraction, leak=n.leak, coding=n.coding)


class _FusedNode:
    """An IF layer with its decode ops, run as one ``CompactLayer`` (see ``fusion``)."""

    kind, step = "fused", True

    def __init__(self, layer: FusedLayer):
        self.layer, self.name = layer, layer.name
        self.inputs, self.outputs = [layer.current], [layer.output]
        self._compact: dict = {}

    def compact(self, dtype) -> CompactLayer:
        if dtype not in self._compact:
            self._compact[dtype] = self.layer.compact(dtype)
        return self._compact[dtype]


class NumpyRuntime:
    """Executes an artifact (``onnx.ModelProto``) with numpy in the order of ``schedule``.

    With ``fuse`` (default), each IF node and its decode ops run as one compact kernel (``fusion``): the
    same values up to the last bits of each unit's decode sum, padding neurons skipped; with ``chains``
    (default) too, a stage made of plain chains of such layers and matrix products (one, or one per axis
    of a separable network) runs as compiled loops (``chain``)."""

    def __init__(self, model: onnx.ModelProto, timesteps: int, fuse: bool = True, chains: bool = True):
        self.model, self.timesteps = model, int(timesteps)
        graph = model.graph
        self.initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.output_names = [o.name for o in graph.output]
        fused = {id(f.nodes[0]): f for f in find_fusable(list(graph.node), self.initializers,
                                                         set(self.output_names))} if fuse else {}
        absorbed = {id(n) for f in fused.values() for n in f.nodes[1:]}
        self.rounds = [(static, [_FusedNode(fused[id(n.proto)]) if id(n.proto) in fused else n
                                 for n in stage if id(n.proto) not in absorbed])
                       for static, stage in schedule(model)]
        self.chains = [find_chains(stage, self.initializers) if fuse and chains else None
                       for _, stage in self.rounds]         # per stage: its compiled chains, or None

    @property
    def fused_any(self) -> bool:
        return any(n.kind == "fused" for _, stage in self.rounds for n in stage)

    @property
    def blocks_itself(self) -> bool:
        """Whether every stage runs as a compiled chain, which steps cache-sized blocks of points itself."""
        return kernels.available and all(chains is not None for chains, (_, stage) in zip(self.chains, self.rounds)
                                         if stage)

    def run(self, inputs: dict[str, np.ndarray], timesteps: int | None = None,
            per_neuron: bool = False) -> RunResult:
        """``per_neuron``: count each neuron's spikes too (``SpikeCounts.per_neuron``); needs an unfused
        runtime (``fuse=False``), whose IF nodes run one by one."""
        if per_neuron and self.fused_any:
            raise ArtifactError("per-neuron spike counts need the unfused reference runtime (fuse=False)")
        T = int(timesteps or self.timesteps)
        if T <= 0:
            raise ArtifactError(f"timesteps must be positive, got {T}")
        values: dict[str, np.ndarray | None] = dict(self.initializers)
        values.update(inputs)
        values[""] = None
        result = RunResult(outputs={})
        for (static, stage), chains in zip(self.rounds, self.chains):
            for node in static:
                run_static(node, values)
            if chains and all(chain.ready(values) for chain in chains):
                for chain in chains:
                    chain.run(values, T, result.spikes, SpikeCounts)
            elif stage:
                self._run_stage(stage, values, T, result.spikes, per_neuron)
        result.outputs = {name: values[name] for name in self.output_names}
        return result

    def _run_stage(self, stage: list[PlannedNode | _FusedNode], values: dict, T: int, spikes: dict,
                   per_neuron: bool = False) -> None:
        local = dict(values)
        membrane = {id(n): values[n.inputs[spec.IF_MEMBRANE]] for n in stage if n.kind == spec.IF_OP}
        sums: dict[int, np.ndarray] = {}
        fired: dict[int, tuple] = {}     # per IF node: events per slot [n, K] summed over points, live mask
        fused = {}     # per fused node: (compact layer, membranes, constant current or None, bias, shape)
        for n in stage:
            if n.kind == "fused":
                fused[id(n)] = None            # built at the first step, when the current's shape is known
                spikes.setdefault(n.name, SpikeCounts())
            if n.kind == spec.IF_OP:
                live = live_mask(values[n.inputs[spec.IF_THETA_POS]], values[n.inputs[spec.IF_THETA_NEG]], n.signed)
                spikes.setdefault(n.name, SpikeCounts(neurons=int(live.sum())))
                if per_neuron:
                    fired[id(n)] = (0, live)
        for t in range(T):
            for n in stage:
                if n.kind == "fused":
                    z = local[n.inputs[0]]
                    if fused[id(n)] is None:
                        compact, bias = n.compact(z.dtype), n.layer.bias(z.dtype)
                        shape = z.shape[:-1] + (compact.n,)
                        constant = None
                        if n.inputs[0] in values:       # a constant current: the bias added once
                            constant, bias = compact.unit_rows(z, bias), None
                        fused[id(n)] = (compact, compact.initial_membrane(int(np.prod(shape[:-1]))), constant,
                                        bias, shape)
                        spikes[n.name].neurons = compact.M
                    compact, v, constant, bias, shape = fused[id(n)]
                    if constant is not None:
                        rows = constant
                    elif z.shape[-1] == compact.n:
                        rows = z.reshape(-1, compact.n)
                    else:                               # a current [..., 1] broadcast to the n units
                        rows, bias = compact.unit_rows(z, bias), None
                    out = compact.empty_rows(rows.shape[0])
                    spikes[n.name].events += compact.advance(v, rows, out=out, pre_bias=bias)
                    local[n.outputs[0]] = out.reshape(shape)
                elif n.kind == spec.IF_OP:
                    z, p = local[n.inputs[spec.IF_CURRENT]], params(n, local)
                    s, membrane[id(n)] = phase_step(membrane[id(n)], z, t, p, T) if n.coding == spec.CODING_PHASE \
                        else if_step(membrane[id(n)], z, p)
                    local[n.outputs[spec.IF_SPIKES]] = s
                    if len(n.outputs) > 1 and n.outputs[spec.IF_MEMBRANE_OUT]:
                        local[n.outputs[spec.IF_MEMBRANE_OUT]] = membrane[id(n)]
                    spikes[n.name].events += int(np.count_nonzero(s))
                    if id(n) in fired:
                        counted, live = fired[id(n)]
                        fired[id(n)] = (counted + np.count_nonzero(s.reshape(-1, *s.shape[-2:]), axis=0), live)
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
                count.batch = int(np.prod(fused[id(n)][4][:-1], dtype=np.int64))
                count.timesteps = T
            elif n.kind == spec.IF_OP:
                count = spikes[n.name]
                count.batch = int(np.prod(local[n.inputs[spec.IF_CURRENT]].shape[:-1], dtype=np.int64))
                count.timesteps = T
                if id(n) in fired:
                    per_slot, live = fired[id(n)]
                    count.per_neuron = per_slot[np.broadcast_to(live, np.shape(per_slot))]

