"""Trained spiking networks (``parameters``) as onnx2snn artifacts (``runtimes.spec``), and back.

Every spiking layer l is written as the converter writes it (``onnx2snn.rewrite``), one neuron per unit::

    h_{l-1} ─MatMul(W_l)─Add(b_l)─▶ z_l ─IF(v0, β = 0, θ+, θ-)─▶ s_l ─Mul(1)─ReduceSum(-1)─Add(0)─▶ h_l

(h_l = s_l; IF attributes signed = 1, fire_fraction = a, and leak = λ only when λ ≠ 1: u = λ·v + (z + β)), so
the runtimes fuse it (``runtimes.fusion``) and run the whole MLP as one compiled chain (``runtimes.chain``).
The readout (metadata ``onnx2snn.readout``: the converter's "analog" or "spiking"):

    analog   h_{L-1} ─MatMul(W_L)─Add(b_L)─▶ y/step ─Decode─▶ y    (1/T)·Σ_t (s·W + b) = ((1/T)·Σ_t s)·W + b
    rate     layer L spiking as above,  h_L ─Decode─▶ y           y = (1/T)·Σ_t s_L(t)

A DeepONet's one input [N, m + d] is sliced (static) into f [N, m] and x [N, d]; a ``branch/`` chain reads f
and a ``trunk/`` chain x, each ending in its Decode; u = ReduceSum(branch ⊙ trunk, axis 1, keepdims) + b0.

``mlp_from_artifact`` reads such a chain back, ours or the converter's (``--pieces 1``), folding what
``parameters`` has no place for into the affine maps (exact in real arithmetic; only rounding changes):
the IF bias β into its layer's bias (z + β), the decode h = w ⊙ s + c into the next layer, W' = diag(w)·W and
b' = b + c·W; an unsigned layer (signed = 0) gets θ- = inf (it never fires negatively: the same neuron).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from runtimes import spec
from runtimes.fusion import find_fusable
from runtimes.network import artifact_timesteps
from runtimes.neuron import NeuronParams

from ..errors import ArtifactError
from ..rewrite import AXES_LAST, add_if_layer
from .parameters import DenseLayer, SpikingDeepONetParams, SpikingMLPParams

OPSET = 17          # the standard opset of the shipped models (the converter keeps its source's)
SUPPORTED = "training reads only artifacts with one neuron per unit, plain chain (convert with '--pieces 1')"
# Metadata describing the graph itself: written by the builders, never taken from the caller.
_OWN_KEYS = (spec.META_FORMAT, spec.META_TIMESTEPS, spec.META_ENCODING, spec.META_READOUT, spec.META_NEURON)


def mlp_artifact(params: SpikingMLPParams, metadata: dict[str, str] | None = None, input_name: str = "x",
                 output_name: str = "y") -> onnx.ModelProto:
    """The artifact of a spiking MLP: input [N, n_0] -> output [N, n_L], in the first weight's dtype.
    ``metadata`` (e.g. ``onnx2snn.domain``) is added to the keys describing the graph (``_OWN_KEYS``)."""
    dtype = _dtype(params)
    builder = _Builder(dtype)
    builder.chain(params, input_name, output_name, "")
    return builder.model([_tensor_info(input_name, dtype, params.n_inputs)],
                         [_tensor_info(output_name, dtype, params.n_outputs)],
                         _metadata(params.timesteps, _readout(params), _neuron(params), metadata))


def deeponet_artifact(params: SpikingDeepONetParams, metadata: dict[str, str] | None = None,
                      input_name: str = "x", output_name: str = "u") -> onnx.ModelProto:
    """The artifact of a spiking DeepONet: input [f, x] [N, m + d] -> u [N, 1] (dtype: the branch's).
    Metadata: ``params.metadata``, then ``metadata``, then the keys describing the graph."""
    branch, trunk = params.branch, params.trunk
    if trunk.timesteps != branch.timesteps or trunk.n_outputs != branch.n_outputs:
        raise ValueError(f"branch and trunk must share T and their output width: T {branch.timesteps} / "
                         f"{trunk.timesteps}, width {branch.n_outputs} / {trunk.n_outputs}")
    dtype = _dtype(branch)
    m, d = branch.n_inputs, trunk.n_inputs
    builder = _Builder(dtype)
    builder.slice("branch/f", input_name, 0, m)
    builder.slice("trunk/x", input_name, m, m + d)
    builder.chain(branch, "branch/f", "branch/out", "branch/")
    builder.chain(trunk, "trunk/x", "trunk/out", "trunk/")
    builder.node("Mul", ["branch/out", "trunk/out"], "product")
    builder.node("ReduceSum", ["product", builder.const("axes_features", np.array([1], np.int64))], "sum",
                 keepdims=1)
    builder.node("Add", ["sum", builder.const("b0", np.array([params.bias], dtype))], output_name)
    neuron = _neuron(branch) if _neuron(branch) == _neuron(trunk) \
        else f"branch {_neuron(branch)}; trunk {_neuron(trunk)}"
    return builder.model([_tensor_info(input_name, dtype, m + d)], [_tensor_info(output_name, dtype, 1)],
                         _metadata(branch.timesteps, "analog", neuron, {**params.metadata, **(metadata or {})}))


def mlp_from_artifact(model: onnx.ModelProto) -> tuple[SpikingMLPParams, dict]:
    """The parameters of a plain-chain artifact with one neuron per unit (β and decodes folded, see above),
    and its binding for ``update_artifact``: {"input", "output": names, "widths": [n_0, …, n_L],
    "layers": [{"weight", "bias": initializer names (bias None if absent), "neurons": IF node name or None}]}.
    Anything else raises ``ArtifactError`` naming the offending node."""
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in inits]
    outputs = [o.name for o in graph.output]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ArtifactError(f"graph inputs {inputs}, outputs {outputs}: one of each expected; {SUPPORTED}")
    items = _chain_items(graph, inputs[0], outputs[0], inits)
    neurons = [item for item in items if item[0] == "neurons"]
    if not neurons:
        raise ArtifactError(f"node '{_name(items[0][1])}': the chain has no IF layer; {SUPPORTED}")
    shared = [(fused.params.fire_fraction, fused.params.leak) for _, _, fused in neurons]
    for (_, node, _), values in zip(neurons, shared):
        if values != shared[0]:
            raise _refuse(node, f"fire fraction and leak {values} differ from the first layer's {shared[0]}")
    layers, carry, binding_layers = [], None, []
    for k in range(0, len(items), 2):
        _, matmul, (weight, bias, bias_name) = items[k]
        weight, n = weight.copy(), weight.shape[1]
        bias = np.broadcast_to(np.zeros((), weight.dtype) if bias is None else bias, (n,)).astype(weight.dtype)
        if carry is not None:
            w, c = carry
            if weight.shape[0] != len(w):
                raise _refuse(matmul, f"a {weight.shape[0]}-row matrix after {len(w)} units")
            bias, weight = bias + c @ weight, w[:, None] * weight
        entry = {"weight": matmul.input[1], "bias": bias_name, "neurons": None}
        if k + 1 == len(items):
            layers.append(DenseLayer(weight, bias, spiking=False))
        else:
            _, node, fused = items[k + 1]
            p = fused.params
            if p.shape[1] != 1:
                raise _refuse(node, f"{p.shape[1]} neurons per unit")
            if p.shape[0] != n:
                raise _refuse(node, f"{p.shape[0]} units after a MatMul with {n} columns")
            column = lambda a: np.broadcast_to(a, p.shape)[:, 0].astype(weight.dtype)
            theta_neg = column(p.theta_neg) if p.signed else np.full(n, np.inf, weight.dtype)
            layers.append(DenseLayer(weight, bias + column(p.bias), True, column(p.theta_pos), theta_neg,
                                     column(p.v0)))
            carry = column(fused.decode_weight), np.broadcast_to(fused.decode_offset, (n,)).astype(weight.dtype)
            entry["neurons"] = _name(node)
        binding_layers.append(entry)
    if layers[-1].spiking and (np.any(carry[0] != 1) or np.any(carry[1] != 0)):
        raise _refuse(neurons[-1][1], "a rate readout decoded with weights != 1 or offsets != 0")
    fire_fraction, leak = shared[0]
    params = SpikingMLPParams(layers, artifact_timesteps(model), leak=leak, fire_fraction=fire_fraction)
    binding = {"input": inputs[0], "output": outputs[0], "layers": binding_layers,
               "widths": [params.n_inputs] + [layer.width for layer in layers]}
    return params, binding


def update_artifact(model: onnx.ModelProto, params: SpikingMLPParams, binding: dict) -> onnx.ModelProto:
    """``model`` with ``params`` written back: rebuilt by ``mlp_artifact`` under the bound input and output
    names, keeping the model's metadata (domain, source, …) except the keys describing the graph."""
    widths = [params.n_inputs] + [layer.width for layer in params.layers]
    if widths != binding["widths"] or params.readout != ("rate" if binding["layers"][-1]["neurons"] else "analog"):
        raise ValueError(f"params (widths {widths}, {params.readout} readout) do not fit the artifact "
                         f"(widths {binding['widths']})")
    metadata = {p.key: p.value for p in model.metadata_props}
    return mlp_artifact(params, metadata, binding["input"], binding["output"])


class _Builder:
    """Nodes and initializers of an artifact under construction, all floats in ``dtype``."""

    def __init__(self, dtype: np.dtype):
        self.dtype, self.nodes, self.inits = dtype, [], {}
        self.const(AXES_LAST, np.array([-1], np.int64))

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits[name] = numpy_helper.from_array(np.ascontiguousarray(value), name)
        return name

    def node(self, op: str, inputs: list[str], output: str | list[str], name: str | None = None,
             **attributes) -> None:
        """A node producing ``output`` (or the outputs listed), named ``name`` or after its (first) output."""
        outputs = [output] if isinstance(output, str) else output
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name or outputs[0], **attributes))

    def slice(self, out: str, x: str, start: int, end: int) -> None:
        """out = x[:, start:end]."""
        ints = lambda v: np.array([v], np.int64)
        self.node("Slice", [x, self.const(f"{out}/starts", ints(start)), self.const(f"{out}/ends", ints(end)),
                            self.const(f"{out}/axes", ints(1))], out)

    def chain(self, params: SpikingMLPParams, x: str, out: str, prefix: str) -> None:
        """Layers ``{prefix}layer{l}`` (l = 1..L) from ``x``, then Decode into ``out``."""
        h, width = x, params.n_inputs
        for l, layer in enumerate(params.layers, 1):
            name, last = f"{prefix}layer{l}", l == len(params.layers)
            if layer.weight.shape[0] != width or not (layer.spiking or last):
                raise ValueError(f"layer {l}: weight {layer.weight.shape} after width {width}, spiking "
                                 f"{layer.spiking}; every layer but the last must spike")
            step = f"{out}/step" if last else f"{name}/h"
            z = f"{name}/z" if layer.spiking else step
            self.node("MatMul", [h, self.const(f"{name}/W", self.cast(layer.weight))], f"{name}/xW",
                      f"{name}/MatMul")
            self.node("Add", [f"{name}/xW", self.const(f"{name}/b", self.cast(layer.bias))], z, f"{name}/Add")
            if layer.spiking:
                self.neurons(name, z, step, layer, params)
            h, width = step, layer.width
        self.node(spec.DECODE_OP, [h], out, f"{out}/decode", domain=spec.DOMAIN)

    def neurons(self, name: str, current: str, out: str, layer: DenseLayer, params: SpikingMLPParams) -> None:
        """The converter's spiking layer (``rewrite.add_if_layer``) with β = 0 and the identity decode."""
        n, col = layer.width, lambda a: self.cast(a).reshape(-1, 1)
        neurons = NeuronParams(bias=np.zeros((n, 1), self.dtype), theta_pos=col(layer.theta_pos),
                               theta_neg=col(layer.theta_neg), v0=col(layer.v0), signed=True,
                               fire_fraction=params.fire_fraction, leak=params.leak)
        add_if_layer(self, name, current, out, neurons, np.ones((n, 1), self.dtype), np.zeros(n, self.dtype),
                     AXES_LAST)

    def cast(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, self.dtype)

    def model(self, inputs: list, outputs: list, metadata: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "snn", inputs, outputs, list(self.inits.values()))
        model = helper.make_model(graph, producer_name="onnx2snn", opset_imports=[
            helper.make_opsetid("", OPSET), helper.make_opsetid(spec.DOMAIN, spec.DOMAIN_VERSION)])
        model.ir_version = spec.IR_VERSION
        for key, value in metadata.items():
            model.metadata_props.add(key=key, value=value)
        return model


def _chain_items(graph: onnx.GraphProto, x: str, y: str, inits: dict[str, np.ndarray]) -> list[tuple]:
    """Walk from ``x`` to ``y``: ("affine", MatMul node, (W, b or None, b's name)) and ("neurons", IF node,
    ``FusedLayer``) alternating, affine first; every node of the graph on the walk, the last one a Decode."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    fused = {id(f.nodes[0]): f for f in find_fusable(list(graph.node), inits, {y})}
    items, visited, tensor = [], set(), x
    while True:
        nodes = readers.get(tensor, [])
        if len(nodes) != 1:
            raise ArtifactError(f"tensor '{tensor}' is read by {len(nodes)} nodes "
                                f"({', '.join(repr(_name(n)) for n in nodes)}), not one; {SUPPORTED}")
        node, expected = nodes[0], "neurons" if items and items[-1][0] == "affine" else "affine"
        visited.add(id(node))
        if node.domain == spec.DOMAIN and node.op_type == spec.DECODE_OP and items:
            if node.output[0] != y:
                raise _refuse(node, "a Decode before the graph output")
            break
        if node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and expected == "affine":
            weight = inits.get(node.input[1]) if node.input[0] == tensor else None
            if weight is None or weight.ndim != 2:
                raise _refuse(node, "a MatMul not by a constant matrix")
            tensor, bias, bias_name = node.output[0], None, None
            add = readers.get(tensor, [])
            constants = [i for i in add[0].input if i in inits] if len(add) == 1 and add[0].op_type == "Add" else []
            if len(constants) == 1 and np.size(inits[constants[0]]) in (1, weight.shape[1]):
                bias_name, bias, tensor = constants[0], np.ravel(inits[constants[0]]), add[0].output[0]
                visited.add(id(add[0]))
            items.append(("affine", node, (weight, bias, bias_name)))
        elif node.domain == spec.DOMAIN and node.op_type == spec.IF_OP and expected == "neurons":
            if id(node) not in fused:
                raise _refuse(node, "an IF node not followed by its decode Mul(w) → ReduceSum(-1) → Add(c) "
                                    "with constant parameters")
            items.append(("neurons", node, fused[id(node)]))
            visited.update(id(n) for n in fused[id(node)].nodes)
            tensor = fused[id(node)].output
        else:
            wanted = "MatMul" if expected == "affine" else "IF"
            raise _refuse(node, f"op {node.op_type} where {wanted}{' or Decode' if items else ''} was expected")
    left = [node for node in graph.node if id(node) not in visited]
    if left:
        raise _refuse(left[0], "not on the chain from input to output")
    return items


def _refuse(node: onnx.NodeProto, what: str) -> ArtifactError:
    return ArtifactError(f"node '{_name(node)}': {what}; {SUPPORTED}")


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _dtype(params: SpikingMLPParams) -> np.dtype:
    dtype = params.layers[0].weight.dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"weights must be float32 or float64, got {dtype}")
    return dtype


def _tensor_info(name: str, dtype: np.dtype, width: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), ["N", width])


def _readout(params: SpikingMLPParams) -> str:
    """The converter's readout names (``--readout``): "analog", or "spiking" for a rate readout."""
    return "spiking" if params.readout == "rate" else "analog"


def _neuron(params: SpikingMLPParams) -> str:
    """The converter's neuron names by fire fraction ("round": a = 1/2, "floor": a = 1), with the leak if any."""
    kind = {0.5: "round", 1.0: "floor"}.get(params.fire_fraction, f"fire_fraction={params.fire_fraction:g}")
    return kind if params.leak == 1.0 else f"{kind}, leak={params.leak:g}"


def _metadata(timesteps: int, readout: str, neuron: str, extra: dict | None) -> dict[str, str]:
    own = {spec.META_FORMAT: spec.FORMAT_VERSION, spec.META_TIMESTEPS: str(int(timesteps)),
           spec.META_ENCODING: "direct", spec.META_READOUT: readout, spec.META_NEURON: neuron}
    return {**{k: str(v) for k, v in (extra or {}).items() if k not in _OWN_KEYS}, **own}
