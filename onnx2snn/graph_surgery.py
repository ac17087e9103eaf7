"""Graph edits on onnx-graphsurgeon: the ANN's graph imported as ``gs.Graph``, edited, exported as an artifact.

A ``gs.Graph`` holds each tensor once, as an object shared by its producer and its readers: replacing a
node's output tensor object or an input slot reconnects the graph, and nodes that no longer lead to a graph
output are dropped by ``cleanup()``.  ``GraphEditor`` adds nodes and constants by the names the artifact
uses (``runtimes.spec``: the names are its interface: spike counts by IF node, initializers by layer), and
``export_artifact`` writes the edited graph in topological order with the source's declared inputs and
outputs, its opset imports plus the ``onnx2snn`` domain, and its metadata.
"""

from __future__ import annotations

import contextlib

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from runtimes import spec

ORT_DEFAULT_LOG_SEVERITY = 2     # onnxruntime's own default (warnings), restored after constant folding


@contextlib.contextmanager
def quiet():
    """onnx-graphsurgeon prints its warnings (and errors, before raising them) on stdout, and its constant
    folding runs onnxruntime sessions whose C++ warnings go to stderr: silence both while it runs (the
    library never prints; a fold that fails leaves the node as it is)."""
    import onnxruntime as ort
    previous = gs.logger.G_LOGGER.severity
    gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.CRITICAL + 10
    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        gs.logger.G_LOGGER.severity = previous
        ort.set_default_logger_severity(ORT_DEFAULT_LOG_SEVERITY)


def restore_declared_io(out: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """Give ``out``'s graph inputs and outputs the declarations (type, shape) they have in ``source``:
    onnx-graphsurgeon may drop declared shapes."""
    for kept, original in ((out.graph.input, source.graph.input), (out.graph.output, source.graph.output)):
        declared = {v.name: v for v in original}
        for k, value in enumerate(kept):
            if value.name in declared:
                kept[k].CopyFrom(declared[value.name])


class GraphEditor:
    """``graph`` (imported from a canonical model, ``importer``: unique node names) and its tensors by name.

    ``node`` and ``const`` take names: an existing tensor's name means that tensor (so a new node reading
    or producing it is connected to the graph), a new name a new tensor; a node's attributes are written in
    name order, as ``onnx.helper.make_node`` writes them.  ``detach`` disconnects a node
    (``cleanup`` then drops it); ``added``: the nodes ``node`` made, in order."""

    def __init__(self, model: onnx.ModelProto):
        with quiet():
            self.graph = gs.import_onnx(model)
        self.tensors: dict[str, gs.Tensor] = self.graph.tensors()
        self.nodes = {n.name: n for n in self.graph.nodes}
        self.added: list[gs.Node] = []

    def tensor(self, name: str) -> gs.Tensor:
        if name not in self.tensors:
            self.tensors[name] = gs.Variable(name)
        return self.tensors[name]

    def const(self, name: str, value: np.ndarray) -> str:
        self.tensors[name] = gs.Constant(name, np.ascontiguousarray(value))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "",
             **attributes) -> gs.Node:
        node = gs.Node(op, name=name, attrs=dict(sorted(attributes.items())), domain=domain or None,
                       inputs=[self.tensor(t) for t in inputs], outputs=[self.tensor(t) for t in outputs])
        self.graph.nodes.append(node)
        self.nodes[name] = node
        self.added.append(node)
        return node

    def detach(self, node: gs.Node) -> None:
        node.inputs.clear()
        node.outputs.clear()

    def rename_output(self, node: gs.Node, old: str, new: str) -> gs.Tensor:
        """``node`` produces a new tensor ``new`` in place of ``old`` (whose readers keep ``old``)."""
        tensor = self.tensor(new)
        node.outputs[[t.name for t in node.outputs].index(old)] = tensor
        return tensor

    def reroute(self, node: gs.Node, old: str, new: str) -> None:
        """``node`` reads tensor ``new`` wherever it read ``old``."""
        for k, t in enumerate(list(node.inputs)):
            if t.name == old:
                node.inputs[k] = self.tensor(new)


def export_artifact(editor: GraphEditor, source: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    """The edited graph as an artifact: dead nodes dropped and the rest in topological order
    (``cleanup().toposort()``); ``source``'s declared inputs and outputs, graph name, standard opset imports
    plus the ``onnx2snn`` domain; IR version ``spec.IR_VERSION`` up to opset 21 (the source's beyond);
    metadata: ``source``'s, then ``metadata``.  Only graph inputs and outputs declare types: an
    intermediate tensor's shape per step is the runtimes' business (``spec``)."""
    graph = editor.graph
    graph.cleanup().toposort()
    io = {id(t) for t in graph.inputs + graph.outputs}
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and id(tensor) not in io:
            tensor.dtype, tensor.shape = None, None
    graph.name = graph.name or "snn"
    graph.producer_name, graph.producer_version = "onnx2snn", ""
    opset = next((o.version for o in source.opset_import if o.domain in ("", "ai.onnx")), 13)
    opsets = [o for o in source.opset_import if o.domain != spec.DOMAIN]
    opsets.append(onnx.helper.make_opsetid(spec.DOMAIN, spec.DOMAIN_VERSION))
    with quiet():
        out = gs.export_onnx(graph, do_type_check=False, opset_imports=opsets)
    restore_declared_io(out, source)
    out.ir_version = spec.IR_VERSION if opset <= 21 else source.ir_version
    del out.metadata_props[:]
    for key, value in {**{p.key: p.value for p in source.metadata_props}, **metadata}.items():
        out.metadata_props.add(key=key, value=value)
    return out
