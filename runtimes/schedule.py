"""The execution order of an artifact, decided from tensor names alone (shared by the non-numpy backends).

It is the numpy reference runtime's order (``numpy_ref``): rounds of

* static nodes — no dependence on an IF output, or only through a Decode — that can run now, once;
* then a *stage*: every step node (in topological order) whose static inputs are known, run for T steps;

until every node has run.  A Decode ends a stage; a chain fed by a Decode's output is a later stage.
"""

from __future__ import annotations

import onnx
from onnx import helper

from . import spec
from .errors import ArtifactError
from .ops import make_kernel


class PlannedNode:
    """A node of the artifact: ``kind`` ("IF", "Decode" or "standard"), whether it is a ``step`` node,
    the IF attributes (``if_attributes``), and (on first use) the numpy kernel of a standard node."""

    def __init__(self, proto: onnx.NodeProto, step: bool, opsets: dict[str, int]):
        self.proto, self.step, self._opsets = proto, step, opsets
        self.name = proto.name or proto.output[0]
        self.inputs, self.outputs = list(proto.input), list(proto.output)
        self.kind = proto.op_type if proto.domain == spec.DOMAIN else "standard"
        if proto.domain == spec.DOMAIN and proto.op_type not in (spec.IF_OP, spec.DECODE_OP):
            raise ArtifactError(f"node '{self.name}': unknown op {spec.DOMAIN}.{proto.op_type}")
        self.signed, self.fire_fraction, self.leak = if_attributes(proto) if self.kind == spec.IF_OP \
            else (True, 0.5, 1.0)
        self.coding = if_coding(proto) if self.kind == spec.IF_OP else spec.CODING_RATE
        self._kernel = None

    @property
    def kernel(self):
        """The numpy kernel of a standard node (``ops.make_kernel``)."""
        if self._kernel is None:
            self._kernel = make_kernel(self.proto, self._opsets)
        return self._kernel


def if_attributes(proto: onnx.NodeProto) -> tuple[bool, float, float]:
    """(signed, fire_fraction, leak) of an IF node, with the defaults of ``spec`` (1, 0.5, 1.0); raises
    ``ArtifactError`` naming the node for a leak that is not a finite number in (0, 1]."""
    attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
    leak = attrs.get(spec.IF_LEAK, 1.0)
    if not (isinstance(leak, (int, float)) and 0 < leak <= 1):          # NaN and ±inf fail the comparison
        raise ArtifactError(f"node '{proto.name or proto.output[0]}': IF attribute '{spec.IF_LEAK}' = {leak!r} "
                            f"is not a finite number in (0, 1]")
    return bool(attrs.get(spec.IF_SIGNED, 1)), float(attrs.get(spec.IF_FIRE_FRACTION, 0.5)), float(leak)


def if_coding(proto: onnx.NodeProto) -> str:
    """An IF node's ``coding`` ("rate" when absent); raises ``ArtifactError`` naming the node for an unknown
    coding, a phase-coded node with a leak, or a delta-coded one unsigned or with a leak (``spec``)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
    coding = attrs.get(spec.IF_CODING, spec.CODING_RATE)
    coding = coding.decode() if isinstance(coding, bytes) else coding
    name = proto.name or proto.output[0]
    if coding not in (spec.CODING_RATE, spec.CODING_PHASE, spec.CODING_DELTA):
        raise ArtifactError(f"node '{name}': IF attribute '{spec.IF_CODING}' = {coding!r}; use "
                            f"'{spec.CODING_RATE}', '{spec.CODING_PHASE}' or '{spec.CODING_DELTA}'")
    if coding == spec.CODING_PHASE and if_attributes(proto)[2] != 1:
        raise ArtifactError(f"node '{name}': a phase-coded IF node has no leak (spec)")
    if coding == spec.CODING_DELTA and if_attributes(proto)[::2] != (True, 1.0):
        raise ArtifactError(f"node '{name}': a delta-coded IF node is signed and has no leak (spec)")
    return coding


def step_tensors(nodes: list[onnx.NodeProto]) -> set[str]:
    """Tensors that depend on an IF output other than through a Decode (nodes in topological order)."""
    step: set[str] = set()
    for node in nodes:
        if node.domain == spec.DOMAIN and node.op_type == spec.DECODE_OP:
            continue
        if (node.domain == spec.DOMAIN and node.op_type == spec.IF_OP) or any(i in step for i in node.input):
            step.update(o for o in node.output if o)
    return step


def is_step(node: onnx.NodeProto, step: set[str]) -> bool:
    custom = node.domain == spec.DOMAIN
    return (custom and node.op_type == spec.IF_OP) or any(i in step for i in node.input) \
        or (custom and node.op_type == spec.DECODE_OP and node.input[0] in step)


def _stage(pending: list[PlannedNode], known: set[str]) -> list[PlannedNode]:
    """Step nodes (in topological order) all of whose static inputs are known (an IF's membrane input
    is its initial state, not a dependency)."""
    produced: set[str] = set()
    stage = []
    for n in pending:
        if not n.step:
            continue
        needed = [i for k, i in enumerate(n.inputs) if not (n.kind == spec.IF_OP and k == spec.IF_MEMBRANE)]
        if all(i in known or i in produced for i in needed):
            stage.append(n)
            produced.update(n.outputs)
    return stage


def schedule(model: onnx.ModelProto) -> list[tuple[list[PlannedNode], list[PlannedNode]]]:
    """Rounds of (static nodes, stage) in execution order; raises ``ArtifactError`` naming a node that
    can never run."""
    graph = model.graph
    opsets = {o.domain or "": o.version for o in model.opset_import}
    protos = list(graph.node)
    step = step_tensors(protos)
    pending = [PlannedNode(p, is_step(p, step), opsets) for p in protos]
    known = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    rounds = []
    while pending:
        done = [n for n in pending if not n.step and all(i in known for i in n.inputs)]
        for n in done:
            known.update(n.outputs)
        stage = _stage(pending, known)
        if not done and not stage:
            missing = sorted({i for n in pending for i in n.inputs if i not in known
                              and not any(i in m.outputs for m in pending)})
            raise ArtifactError(f"node '{pending[0].name}' cannot run: missing inputs {missing}")
        known.update(o for n in stage if n.kind == spec.DECODE_OP for o in n.outputs)
        rounds.append((done, stage))
        finished = set(map(id, done + stage))
        pending = [n for n in pending if id(n) not in finished]
    return rounds


def run_static(node: PlannedNode, values: dict) -> None:
    """Run a static node on numpy values (a Decode of a static tensor is the mean of a constant)."""
    if node.kind == spec.DECODE_OP:
        values[node.outputs[0]] = values[node.inputs[0]]
        return
    if node.kind == spec.IF_OP:
        raise ArtifactError(f"node '{node.name}': IF outside a stage")
    values.update(zip(node.outputs, node.kernel([values[i] for i in node.inputs])))
