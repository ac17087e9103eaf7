"""Run an artifact in stock onnxruntime: the artifact rewritten into standard ONNX (no custom kernels).

``to_standard_onnx(model, T)`` replaces the two custom ops of ``runtimes.spec`` and the runtime's time loop
by standard ops, scheduled exactly as the numpy reference runtime schedules them:

* static nodes (no dependence on an IF output, or only through a Decode) stay where they are and run
  once; a Decode of a static tensor becomes ``Identity`` (the mean of a constant);
* each *stage* (the step nodes whose static inputs are known, ``schedule``) becomes one ``Loop``
  of ``T`` iterations.  Its body holds the stage's standard nodes unchanged (they read static tensors and
  initializers from the outer scope) and, per IF node, the neuron written in standard ops::

      u     = λ·v + (Unsqueeze(z, -1) + β)                       Add, Mul (only where λ != 1), Add
      pos   = Cast(u >= a·θ+)                                    GreaterOrEqual, Cast (1.0 / 0.0)
      s     = pos·θ+                                             Mul
      neg   = Cast(u <= -a·θ-);  s = pos·θ+ - neg·θ-             (signed only) LessOrEqual, Cast, Mul, Sub
      v'    = u - s                                              Sub

  with λ a constant of the artifact's dtype, a·θ+ and -a·θ- computed once outside the loop in that dtype,
  exactly as ``neuron.fire`` computes them (so the comparisons are bit-identical to numpy's), and the
  amplitudes θ± with inf (padding, never fires) replaced by 0 so that 0·θ stays 0: every spike equals
  numpy's ``Where`` result exactly (1·θ = θ, 0·θ = 0, θ - 0 = θ, 0 - θ = -θ).  The loop carries,
  per IF node, the membrane v (initially v0 [n, K]) and the per-neuron event count c (c' = c + [pos] +
  [neg], exact in floating point for T < 2^24); per Decode, the running sum Σ_t x(t) (initially 0).  The
  first step is a renamed copy of the body placed before the loop, which then runs T - 1 iterations with
  carried values of their final shape [..., n, K] (onnxruntime reuses buffers only when the shapes of
  carried values do not change).  After the loop each Decode's output is Σ_t x(t) / T under the Decode's
  output name, so the analog nodes downstream are unchanged, and each IF's event count is Σ c (int64).

Two rewrites inside the loop change no spike: a ReduceSum over an axis of size 1 becomes a Squeeze, and an
IF layer that is mostly θ = inf padding and feeds only its decode ``Mul(w) → ReduceSum(-1)`` runs as
one flat padding-free layer (``runtimes.padfree``), points along the last axis: the current reshaped to
[P, n] (P: the points), transposed, its rows gathered by each neuron's unit into [M', P]; the neuron ops
above once on that layer with [M', 1] parameters, ``Mul`` by the decode weights; ``Split`` into the groups
of units, each reshaped to [n_k, k, P] and summed over k; ``Concat``, rows gathered back to unit order,
transposed and reshaped to the current's shape.  (onnxruntime gathers single elements along the last
axis at ~1.7 ns each, rows at ~0.14 ns per element: that gather took a third of the step.  poisson1d's
default conversion, per step: 45 → 34 ANN passes against the per-group blocks used before.)

Extra graph outputs, per IF node ``<name>``, all int64 scalars:
``onnx2snn.events/<name>`` (non-zero spikes over the run), ``onnx2snn.neurons/<name>`` (neurons with a
finite threshold: θ+ finite, or θ- finite for a signed node) and ``onnx2snn.batch/<name>`` (the product
of the current's leading dimensions).  ``OnnxRuntimeRuntime`` turns them into ``SpikeCounts``.

Float differences from the numpy runtime come only from MatMul/ReduceSum summation order (MLAS vs
BLAS/numpy pairwise sums): spike counts agree exactly unless a membrane lands within rounding of a
threshold.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import spec
from .errors import ArtifactError, first_line
from .numpy_ref import RunResult, SpikeCounts
from .padfree import PadFreeLayer, find_padfree_layers
from .rows import chunk_size, chunks, row_inputs
from .schedule import PlannedNode, schedule
from .stream import is_delta

EVENTS_PREFIX = "onnx2snn.events/"
NEURONS_PREFIX = "onnx2snn.neurons/"
BATCH_PREFIX = "onnx2snn.batch/"
# Rows per chunk (``rows.chunk_size``): about this many neuron states per chunk (cache), at least this many
# elements per neuron block and op (onnxruntime's per-node overhead in the loop).  poisson1d, T = 32, one
# thread, ANN passes per step: default expansion (flat padding-free layers) 64 rows 34.0-35.5, 97 rows (this
# rule) 33.8-35.5, 128 33.9, 256 34.1, 512 35.0; one neuron per unit 655 rows 2.83-2.93, 1,310 (this rule)
# 2.80-2.86; before the flat layers, 16 rows were 1.4x slower than 64.
CHUNK_NEURON_STATES = 1 << 19
MIN_OP_ELEMENTS = 1 << 17


def _dtypes(model: onnx.ModelProto) -> dict[str, int]:
    """Element types of the tensors ONNX can type (initializers, inputs, shape inference of the rest)."""
    types = {t.name: t.data_type for t in model.graph.initializer}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
        values = list(inferred.value_info) + list(inferred.input) + list(inferred.output)
    except Exception:  # noqa: BLE001 - inference is a convenience; initializers are enough for artifacts
        values = list(model.graph.input)
    for v in values:
        if v.type.tensor_type.elem_type:
            types.setdefault(v.name, v.type.tensor_type.elem_type)
    return types


def to_standard_onnx(model: onnx.ModelProto, timesteps: int, padfree: bool = True) -> onnx.ModelProto:
    """The artifact as a standard-ONNX model that runs ``timesteps`` steps (see the module docstring);
    ``padfree``: run mostly-padding layers padding-free (``runtimes.padfree``)."""
    T = int(timesteps)
    if T <= 0:
        raise ArtifactError(f"timesteps must be positive, got {T}")
    if is_delta(model):
        raise ArtifactError("a delta-coded artifact streams its points as its steps; it has no standard-ONNX "
                            "form (run it with the numpy or snntorch backend)")
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset < 11:
        raise ArtifactError(f"standard-ONNX export needs opset >= 11 (Loop with outer-scope values); "
                            f"the artifact has opset {opset}")
    types = _dtypes(model)
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    padfree_layers = find_padfree_layers(list(graph.node), inits, {o.name for o in graph.output}, opset) \
        if padfree else {}
    nodes: list[onnx.NodeProto] = []
    consts: list[onnx.TensorProto] = []
    extra_outputs: list[onnx.ValueInfoProto] = []
    used_names = {t.name for t in graph.initializer} | {i.name for i in graph.input} | \
        {o for n in graph.node for o in n.output}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in used_names:
            name, k = f"{base}#{k}", k + 1
        used_names.add(name)
        return name

    def const(base: str, value: np.ndarray) -> str:
        name = fresh(base)
        consts.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def unsqueeze_last(x: str, out: str, name: str, into: list) -> None:
        if opset >= 13:
            into.append(helper.make_node("Unsqueeze", [x, axes_last], [out], name=name))
        else:
            into.append(helper.make_node("Unsqueeze", [x], [out], name=name, axes=[-1]))

    def sum_last(x: str, out: str, name: str, squeeze: bool) -> onnx.NodeProto:
        """ReduceSum over the last axis (keepdims 0), or Squeeze when that axis has size 1."""
        op = "Squeeze" if squeeze else "ReduceSum"
        attrs = {} if squeeze else {"keepdims": 0}
        if opset >= 13:
            return helper.make_node(op, [x, axes_last], [out], name=name, **attrs)
        return helper.make_node(op, [x], [out], name=name, axes=[-1], **attrs)

    axes_last = const("onnx2snn.std/axes_last", np.array([-1], np.int64)) if opset >= 13 else ""
    loop_count = 0
    for static, stage in schedule(model):
        for n in static:
            if n.kind == spec.DECODE_OP:
                nodes.append(helper.make_node("Identity", n.inputs[:1], n.outputs[:1], name=n.name))
            else:
                nodes.append(n.proto)
        if not stage:
            continue
        loop = f"onnx2snn.loop{loop_count}"
        loop_count += 1
        ifs = [n for n in stage if n.kind == spec.IF_OP]
        decodes = [n for n in stage if n.kind == spec.DECODE_OP]
        dtype = _stage_dtype(ifs, types, loop)
        np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
        zero = const(f"{loop}/zero", np.zeros((), np_dtype))
        body: list[onnx.NodeProto] = []
        carried_in, carried_out, init_values, final_names = [], [], [], []

        for n in ifs:   # neurons counted on the artifact's own (padded) tensors, once, outside the loop
            live = _finite(n.inputs[spec.IF_THETA_POS], f"{n.name}/std/live_pos", nodes, fresh)
            if n.signed:
                live_neg = _finite(n.inputs[spec.IF_THETA_NEG], f"{n.name}/std/live_neg", nodes, fresh)
                either = fresh(f"{n.name}/std/live")
                nodes.append(helper.make_node("Or", [live, live_neg], [either], name=either))
                live = either
            live_int = fresh(f"{n.name}/std/live_int")
            nodes.append(helper.make_node("Cast", [live], [live_int], name=live_int, to=TensorProto.INT64))
            count = NEURONS_PREFIX + n.name
            nodes.append(helper.make_node("ReduceSum", [live_int], [count], name=count, keepdims=0))
            extra_outputs.append(helper.make_tensor_value_info(count, TensorProto.INT64, []))
            n.block = _block(n, padfree_layers.get(n.name), inits, const, fresh)
            # levels and amplitudes as the numpy neuron uses them, outside the loop
            _prepare_block(n.block, dtype, np_dtype, zero, nodes, const, fresh)

        fused = {name for n in ifs if n.name in padfree_layers
                 for name in (padfree_layers[n.name].mul_node, padfree_layers[n.name].reduce_node)}
        unit_axis = _size_one_reductions(stage, graph.initializer, opset)
        for n in stage:
            if n.name in fused:
                continue
            if n.kind == spec.IF_OP:
                b = n.block
                if b.gather is not None:
                    _flat_current(padfree_layers[n.name], b, n.inputs[spec.IF_CURRENT], body, const, fresh)
                v_in, c_in = fresh(f"{b.name}/std/membrane_in"), fresh(f"{b.name}/std/count_in")
                v_out = b.membrane_out or fresh(f"{b.name}/std/membrane_out")
                c_out = fresh(f"{b.name}/std/count_out")
                carried_in += [(v_in, dtype), (c_in, dtype)]
                carried_out += [(v_out, dtype), (c_out, dtype)]
                init_values += [b.v0, zero]
                b.final_membrane, b.final_count = fresh(f"{loop}/{b.name}/membrane"), fresh(f"{loop}/{b.name}/count")
                final_names += [b.final_membrane, b.final_count]
                if b.phase:
                    scale_in, scale_out, gate_in, gate_out = (fresh(f"{b.name}/std/{k}") for k in (
                        "scale_in", "scale_out", "gate_in", "gate_out"))
                    _phase_body(b, v_in, v_out, c_in, c_out, scale_in, scale_out, gate_in, gate_out,
                                const(f"{loop}/T_amplitude", np.asarray(T, np_dtype)), zero, body, fresh,
                                unsqueeze_last, opset)
                    carried_in += [(scale_in, dtype), (gate_in, dtype)]
                    carried_out += [(scale_out, dtype), (gate_out, dtype)]
                    init_values += [b.one, b.one]
                    final_names += [fresh(f"{loop}/{b.name}/scale"), fresh(f"{loop}/{b.name}/gate")]
                else:
                    _if_body(b, v_in, v_out, c_in, c_out, body, fresh, unsqueeze_last, opset)
                if n.name in padfree_layers:
                    _flat_decode(padfree_layers[n.name], b, n.inputs[spec.IF_CURRENT], body, opset, const, fresh)
            elif n.kind == spec.DECODE_OP:
                s_in, s_out = fresh(f"{n.name}/std/sum_in"), fresh(f"{n.name}/std/sum_out")
                body.append(helper.make_node("Add", [s_in, n.inputs[0]], [s_out], name=s_out))
                carried_in.append((s_in, dtype))
                carried_out.append((s_out, dtype))
                init_values.append(zero)
                n.final_sum = fresh(f"{loop}/{n.name}/sum")
                final_names.append(n.final_sum)
            elif id(n) in unit_axis:   # a sum over one element: a reshape (exact)
                if unit_axis[id(n)]:   # keepdims
                    body.append(helper.make_node("Identity", n.inputs[:1], n.outputs[:1], name=n.name))
                else:
                    body.append(sum_last(n.inputs[0], n.outputs[0], n.name, squeeze=True))
            else:
                body.append(n.proto)
        iteration, cond_in, cond_out = fresh(f"{loop}/iteration"), fresh(f"{loop}/cond_in"), fresh(f"{loop}/cond_out")
        body.append(helper.make_node("Identity", [cond_in], [cond_out], name=cond_out))
        body_graph = helper.make_graph(
            body, f"{loop}/body",
            [helper.make_tensor_value_info(iteration, TensorProto.INT64, []),
             helper.make_tensor_value_info(cond_in, TensorProto.BOOL, [])] +
            [helper.make_tensor_value_info(name, t, None) for name, t in carried_in],
            [helper.make_tensor_value_info(cond_out, TensorProto.BOOL, [])] +
            [helper.make_tensor_value_info(name, t, None) for name, t in carried_out])
        # Step 1 runs outside the loop (a renamed copy of the body): the carried values then enter the
        # loop with their final shapes, which onnxruntime needs to reuse buffers between iterations.
        step1 = {name: init for (name, _), init in zip(carried_in, init_values)}
        for node in body[:-1]:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[:] = [step1.get(i, i) for i in node.input]
            for k, o in enumerate(node.output):
                if o:
                    step1[o] = fresh(f"{o}@t1")
                    copy.output[k] = step1[o]
            copy.name = fresh(f"{node.name or node.output[0]}@t1")
            nodes.append(copy)
        trips = const(f"{loop}/timesteps", np.array(T - 1, np.int64))
        nodes.append(helper.make_node("Loop", [trips, ""] + [step1[name] for name, _ in carried_out], final_names,
                                      name=loop, body=body_graph))
        divisor = const(f"{loop}/T", np.asarray(T, np_dtype))
        for n in decodes:
            nodes.append(helper.make_node("Div", [n.final_sum, divisor], n.outputs[:1], name=n.name))
        for n in ifs:
            shape, lead, batch = fresh(f"{n.name}/std/shape"), fresh(f"{n.name}/std/lead"), BATCH_PREFIX + n.name
            nodes.append(helper.make_node("Shape", [n.block.final_membrane], [shape], name=shape))
            span = (1, np.iinfo(np.int64).max) if n.block.gather is not None else (0, -2)   # [M', P] or [..., n, K]
            nodes.append(helper.make_node("Slice", [shape, const(f"{n.name}/std/s0", np.array(span[:1], np.int64)),
                                                    const(f"{n.name}/std/s1", np.array(span[1:], np.int64))],
                                          [lead], name=lead))
            nodes.append(helper.make_node("ReduceProd", [lead], [batch], name=batch, keepdims=0))
            counts = fresh(f"{n.name}/std/counts_int")
            nodes.append(helper.make_node("Cast", [n.block.final_count], [counts], name=counts, to=TensorProto.INT64))
            nodes.append(helper.make_node("ReduceSum", [counts], [EVENTS_PREFIX + n.name],
                                          name=EVENTS_PREFIX + n.name, keepdims=0))
            extra_outputs += [helper.make_tensor_value_info(batch, TensorProto.INT64, []),
                              helper.make_tensor_value_info(EVENTS_PREFIX + n.name, TensorProto.INT64, [])]

    used = {i for n in nodes for i in n.input} | _subgraph_inputs(nodes)
    initializers = [t for t in graph.initializer if t.name in used] + consts
    out_graph = helper.make_graph(nodes, graph.name or "snn", list(graph.input),
                                  list(graph.output) + extra_outputs, initializers)
    opsets = [o for o in model.opset_import if o.domain != spec.DOMAIN]
    out = helper.make_model(out_graph, opset_imports=opsets, producer_name="onnx2snn.standard")
    out.ir_version = min(model.ir_version or spec.IR_VERSION, spec.IR_VERSION) if opset <= 21 else model.ir_version
    for p in model.metadata_props:
        out.metadata_props.add(key=p.key, value=p.value)
    out.metadata_props.add(key="onnx2snn.standard_onnx_timesteps", value=str(T))
    return out


def _stage_dtype(ifs: list[PlannedNode], types: dict[str, int], loop: str) -> int:
    """The float type of a stage's step tensors: that of its IF thresholds (all IF nodes agree)."""
    found = {types.get(n.inputs[spec.IF_THETA_POS]) for n in ifs} - {None}
    if len(found) > 1:
        raise ArtifactError(f"{loop}: IF nodes {[n.name for n in ifs]} mix dtypes "
                            f"{sorted(helper.tensor_dtype_to_np_dtype(t).name for t in found)}")
    if not found:
        if ifs:
            raise ArtifactError(f"node '{ifs[0].name}': cannot determine the dtype of its thresholds")
        return TensorProto.FLOAT
    return found.pop()


def _finite(x: str, base: str, nodes: list, fresh) -> str:
    """Bool tensor: ``x`` is finite (neither ±inf nor NaN)."""
    inf, nan, bad, ok = fresh(base + "/isinf"), fresh(base + "/isnan"), fresh(base + "/bad"), fresh(base)
    nodes += [helper.make_node("IsInf", [x], [inf], name=inf), helper.make_node("IsNaN", [x], [nan], name=nan),
              helper.make_node("Or", [inf, nan], [bad], name=bad), helper.make_node("Not", [bad], [ok], name=ok)]
    return ok


class _Block:
    """The dense block of IF neurons inside the loop: a whole IF node [n, K], or the flat layer of a
    padding-free one [M', 1] (then ``gather`` selects each neuron's unit current and ``weight`` is its
    decode, ``runtimes.padfree``)."""

    def __init__(self, name, current, v0, bias, theta_pos, theta_neg, signed, fire_fraction, leak, spikes,
                 zero_bias, membrane_out="", gather=None, weight=None, coding=spec.CODING_RATE):
        self.name, self.current, self.v0, self.bias = name, current, v0, bias
        self.phase = coding == spec.CODING_PHASE
        self.theta_pos, self.theta_neg, self.signed, self.fire_fraction = theta_pos, theta_neg, signed, fire_fraction
        self.leak = leak
        self.spikes, self.membrane_out, self.gather, self.weight = spikes, membrane_out, gather, weight
        self.zero_bias = zero_bias      # β is an all-zero initializer: x = z (no Add)


def _block(n: PlannedNode, layer: PadFreeLayer | None, inits: dict, const, fresh) -> _Block:
    if layer is None:
        membrane_out = n.outputs[spec.IF_MEMBRANE_OUT] if len(n.outputs) > 1 else ""
        bias = inits.get(n.inputs[spec.IF_BIAS])
        return _Block(n.name, n.inputs[spec.IF_CURRENT], n.inputs[spec.IF_MEMBRANE], n.inputs[spec.IF_BIAS],
                      n.inputs[spec.IF_THETA_POS], n.inputs[spec.IF_THETA_NEG], n.signed, n.fire_fraction, n.leak,
                      n.outputs[spec.IF_SPIKES] or fresh(f"{n.name}/std/spikes"),
                      bias is not None and not np.any(bias) and n.coding == spec.CODING_RATE, membrane_out,
                      coding=n.coding)
    name = f"{n.name}/flat"
    tensors = {key: const(f"{name}/{key}", layer.flat(value)) for key, value in layer.tensors.items()}
    return _Block(name, fresh(f"{name}/current"), tensors["v0"], tensors["bias"], tensors["theta_pos"],
                  tensors["theta_neg"], n.signed, n.fire_fraction, n.leak, fresh(f"{name}/spikes"),
                  not np.any(layer.tensors["bias"]), gather=const(f"{name}/neuron_units", layer.neuron_units),
                  weight=const(f"{name}/decode_w", layer.flat(layer.weight)))


def _flat_current(layer: PadFreeLayer, b: _Block, current: str, body: list, const, fresh) -> None:
    """The current of a flat padding-free layer, [M', P] with one row per neuron: z [..., n] reshaped to
    [P, n], transposed, and its rows gathered by ``neuron_units`` (row copies: ~12x faster per element in
    onnxruntime than single elements along the last axis)."""
    n = len(layer.order)
    rows, columns = fresh(f"{b.name}/std/current_rows"), fresh(f"{b.name}/std/current_t")
    body.append(helper.make_node("Reshape", [current, const(f"{b.name}/std/rows", np.array([-1, n], np.int64))],
                                 [rows], name=rows))
    body.append(helper.make_node("Transpose", [rows], [columns], name=columns, perm=[1, 0]))
    body.append(helper.make_node("Gather", [columns, b.gather], [b.current], name=b.current, axis=0))


def _flat_decode(layer: PadFreeLayer, b: _Block, current: str, body: list, opset: int, const, fresh) -> None:
    """The decode of a flat padding-free layer, y [..., n] under the layer's output name: w·s [M', P]
    split into its groups, each reshaped to [n_k, k, P] and summed over k, concatenated, gathered back to
    unit order [n, P], transposed and reshaped to the current's shape [..., n]."""
    weighted = fresh(f"{b.name}/std/weighted")
    body.append(helper.make_node("Mul", [b.spikes, b.weight], [weighted], name=weighted))
    pieces = [weighted]
    if len(layer.groups) > 1:
        pieces = [fresh(f"{b.name}/std/k{g.k}/weighted") for g in layer.groups]
        sizes = np.array(layer.sizes, np.int64)
        if opset >= 13:
            body.append(helper.make_node("Split", [weighted, const(f"{b.name}/std/sizes", sizes)], pieces,
                                         name=pieces[0], axis=0))
        else:
            body.append(helper.make_node("Split", [weighted], pieces, name=pieces[0], axis=0, split=sizes))
    parts = []
    for piece, g in zip(pieces, layer.groups):
        if g.k == 1:
            parts.append(piece)
            continue
        p = f"{b.name}/std/k{g.k}"
        grouped, part = fresh(f"{p}/grouped"), fresh(f"{p}/decoded")
        shape = const(f"{p}/shape", np.array([len(g.units), g.k, -1], np.int64))
        body.append(helper.make_node("Reshape", [piece, shape], [grouped], name=grouped))
        if opset >= 13:
            body.append(helper.make_node("ReduceSum", [grouped, const(f"{p}/axis", np.array([1], np.int64))],
                                         [part], name=part, keepdims=0))
        else:
            body.append(helper.make_node("ReduceSum", [grouped], [part], name=part, axes=[1], keepdims=0))
        parts.append(part)
    joined, ordered, rows, shape = (fresh(f"{b.name}/std/{k}") for k in ("decoded_grouped", "decoded_t",
                                                                          "decoded_rows", "shape"))
    if len(parts) > 1:
        body.append(helper.make_node("Concat", parts, [joined], name=joined, axis=0))
    else:
        joined = parts[0]
    body.append(helper.make_node("Gather", [joined, const(f"{b.name}/std/unit_order", layer.inverse)], [ordered],
                                 name=ordered, axis=0))
    body.append(helper.make_node("Transpose", [ordered], [rows], name=rows, perm=[1, 0]))
    body.append(helper.make_node("Shape", [current], [shape], name=shape))
    body.append(helper.make_node("Reshape", [rows, shape], [layer.output], name=layer.reduce_node))


def _prepare_block(b: _Block, dtype: int, np_dtype, zero: str, nodes: list, const, fresh) -> None:
    """Firing levels a·θ+, -a·θ- and amplitudes θ± (inf → 0) of a block, computed before the loop, and
    its leak λ as a constant of the dtype (λ = 1: none)."""
    b.dtype = dtype
    b.leak_factor = const(f"{b.name}/std/leak", np.asarray(b.leak, np_dtype)) if b.leak != 1 else None
    a = const(f"{b.name}/std/fire_fraction", np.asarray(b.fire_fraction, np_dtype))
    b.level_pos, b.amp_pos = fresh(f"{b.name}/std/level_pos"), fresh(f"{b.name}/std/amp_pos")
    b.level_neg = b.amp_neg = None          # set below where the block is signed
    nodes.append(helper.make_node("Mul", [a, b.theta_pos], [b.level_pos], name=b.level_pos))
    finite = _finite(b.theta_pos, f"{b.name}/std/finite_pos", nodes, fresh)
    nodes.append(helper.make_node("Where", [finite, b.theta_pos, zero], [b.amp_pos], name=b.amp_pos))
    if b.signed:
        b.level_neg, b.amp_neg = fresh(f"{b.name}/std/level_neg"), fresh(f"{b.name}/std/amp_neg")
        scaled = fresh(f"{b.name}/std/scaled_neg")
        nodes.append(helper.make_node("Mul", [a, b.theta_neg], [scaled], name=scaled))
        nodes.append(helper.make_node("Neg", [scaled], [b.level_neg], name=b.level_neg))
        finite = _finite(b.theta_neg, f"{b.name}/std/finite_neg", nodes, fresh)
        nodes.append(helper.make_node("Where", [finite, b.theta_neg, zero], [b.amp_neg], name=b.amp_neg))
    if b.phase:     # the membrane's bounds at the first step, and the amplitude factor T (spec)
        b.lower = fresh(f"{b.name}/std/lower")
        if b.signed:
            nodes.append(helper.make_node("Neg", [b.theta_neg], [b.lower], name=b.lower))
        else:
            b.lower = const(f"{b.name}/std/lower", np.asarray(-np.inf, np_dtype))
        b.one, b.half = const(f"{b.name}/std/one", np.ones((), np_dtype)), const(f"{b.name}/std/half",
                                                                                np.asarray(0.5, np_dtype))


def _compare(op: str, a: str, b: str, out: str, body: list, fresh, opset: int) -> None:
    """``out = a >= b`` (op "Greater") or ``a <= b`` ("Less"): GreaterOrEqual / LessOrEqual from opset 12,
    before that ``Or(Greater, Equal)`` (the same bools, NaN included)."""
    if opset >= 12:
        body.append(helper.make_node(f"{op}OrEqual", [a, b], [out], name=out))
        return
    strict, equal = fresh(f"{out}/strict"), fresh(f"{out}/equal")
    body += [helper.make_node(op, [a, b], [strict], name=strict),
             helper.make_node("Equal", [a, b], [equal], name=equal),
             helper.make_node("Or", [strict, equal], [out], name=out)]


def _fire_body(b: _Block, u: str, levels: tuple, amplitudes: tuple, out: str, c_in: str, c_out: str, body: list,
               fresh, opset: int) -> None:
    """The firing of an integrated membrane ``u`` against ``levels`` (a·θ+, -a·θ-; the second unused when
    unsigned): ``out`` = pos·A+ - neg·A- with ``amplitudes`` (A+, A-), and the event count
    ``c_out`` = ``c_in`` + pos + neg."""
    p = f"{b.name}/std"
    (level_pos, level_neg), (amp_pos, amp_neg) = levels, amplitudes
    pos, pos_f = fresh(f"{p}/fire_pos"), fresh(f"{p}/fire_pos_f")
    _compare("Greater", u, level_pos, pos, body, fresh, opset)
    body.append(helper.make_node("Cast", [pos], [pos_f], name=pos_f, to=b.dtype))
    if b.signed:
        s_pos, neg, neg_f, s_neg = (fresh(f"{p}/{k}") for k in ("spikes_pos", "fire_neg", "fire_neg_f", "spikes_neg"))
        c_mid = fresh(f"{p}/count_mid")
        body.append(helper.make_node("Mul", [pos_f, amp_pos], [s_pos], name=s_pos))
        _compare("Less", u, level_neg, neg, body, fresh, opset)
        body.append(helper.make_node("Cast", [neg], [neg_f], name=neg_f, to=b.dtype))
        body.append(helper.make_node("Mul", [neg_f, amp_neg], [s_neg], name=s_neg))
        body.append(helper.make_node("Sub", [s_pos, s_neg], [out], name=out))
        body.append(helper.make_node("Add", [c_in, pos_f], [c_mid], name=c_mid))
        body.append(helper.make_node("Add", [c_mid, neg_f], [c_out], name=c_out))
    else:
        body.append(helper.make_node("Mul", [pos_f, amp_pos], [out], name=out))
        body.append(helper.make_node("Add", [c_in, pos_f], [c_out], name=c_out))


def _if_body(b: _Block, v_in: str, v_out: str, c_in: str, c_out: str, body: list, fresh, unsqueeze_last,
             opset: int) -> None:
    """One block of IF neurons in standard ops, inside the loop body (see the module docstring)."""
    p = f"{b.name}/std"
    z_col, vz, u = fresh(f"{p}/current_col"), fresh(f"{p}/z_plus_bias"), fresh(f"{p}/u")
    if b.gather is None:
        unsqueeze_last(b.current, z_col, z_col, body)
    else:           # a flat layer's current is already [M', P], one row per neuron
        z_col = b.current
    if b.zero_bias:     # z + 0 = z (up to the sign of a zero, which changes no comparison or spike)
        vz = z_col
    else:
        body.append(helper.make_node("Add", [z_col, b.bias], [vz], name=vz))     # x = z + β
    if b.leak_factor is not None:
        decayed = fresh(f"{p}/decayed")
        body.append(helper.make_node("Mul", [v_in, b.leak_factor], [decayed], name=decayed))   # λ·v
        v_in = decayed
    body.append(helper.make_node("Add", [v_in, vz], [u], name=u))          # u = λ·v + x
    _fire_body(b, u, (b.level_pos, b.level_neg), (b.amp_pos, b.amp_neg), b.spikes, c_in, c_out, body, fresh, opset)
    body.append(helper.make_node("Sub", [u, b.spikes], [v_out], name=v_out))


def _phase_body(b: _Block, v_in: str, v_out: str, c_in: str, c_out: str, scale_in: str, scale_out: str,
                gate_in: str, gate_out: str, timesteps: str, zero: str, body: list, fresh, unsqueeze_last,
                opset: int) -> None:
    """One phase-coded IF node in standard ops (``spec``), the step's scale 2^-t and a gate (1 at the first
    step, then 0) carried by the loop: the current enters as gate·(z + β) (exact: 1·x = x, v + 0 = v), the
    membrane is clipped to [-θ-, θ+] where the gate is 1, the firing levels and amplitudes are scaled by
    2^-t (exact), and the events are T times the digits' amplitudes."""
    p = f"{b.name}/std"
    z_col, vz, gated, u0, low, clipped, gate_b, u = (fresh(f"{p}/{k}") for k in (
        "current_col", "z_plus_bias", "gated", "u0", "low", "clipped", "gate_b", "u"))
    unsqueeze_last(b.current, z_col, z_col, body)
    body.append(helper.make_node("Add", [z_col, b.bias], [vz], name=vz))
    body.append(helper.make_node("Mul", [gate_in, vz], [gated], name=gated))
    body.append(helper.make_node("Add", [v_in, gated], [u0], name=u0))
    body.append(helper.make_node("Max", [u0, b.lower], [low], name=low))
    body.append(helper.make_node("Min", [low, b.theta_pos], [clipped], name=clipped))
    body.append(helper.make_node("Cast", [gate_in], [gate_b], name=gate_b, to=TensorProto.BOOL))
    body.append(helper.make_node("Where", [gate_b, clipped, u0], [u], name=u))
    scaled = {}
    for key in ("level_pos", "amp_pos") + (("level_neg", "amp_neg") if b.signed else ()):
        scaled[key] = fresh(f"{p}/{key}_t")
        body.append(helper.make_node("Mul", [getattr(b, key), scale_in], [scaled[key]], name=scaled[key]))
    digits = fresh(f"{p}/digits")
    _fire_body(b, u, (scaled["level_pos"], scaled.get("level_neg")), (scaled["amp_pos"], scaled.get("amp_neg")),
               digits, c_in, c_out, body, fresh, opset)
    body.append(helper.make_node("Sub", [u, digits], [v_out], name=v_out))
    body.append(helper.make_node("Mul", [digits, timesteps], [b.spikes], name=b.spikes))
    body.append(helper.make_node("Mul", [scale_in, b.half], [scale_out], name=scale_out))
    body.append(helper.make_node("Mul", [gate_in, zero], [gate_out], name=gate_out))


def _size_one_reductions(stage: list[PlannedNode], initializers, opset: int) -> dict[int, bool]:
    """ReduceSum nodes of ``stage`` over the last axis where that axis has size 1, by id → keepdims.

    The last dimension is tracked from the IF outputs (K, the last dimension of θ+ when it is an
    initializer) through elementwise ops with initializers that do not widen it (the decode's Mul)."""
    shapes = {t.name: tuple(t.dims) for t in initializers}
    last: dict[str, int] = {}
    found: dict[int, bool] = {}
    for n in stage:
        if n.kind == spec.IF_OP:
            theta = shapes.get(n.inputs[spec.IF_THETA_POS])
            if theta:
                last.update({o: theta[-1] for o in n.outputs if o})
        elif n.kind == "standard" and n.proto.op_type in ("Mul", "Add", "Sub", "Div") and len(n.inputs) == 2:
            known = [last.get(i) for i in n.inputs]
            others = [shapes.get(i) for i in n.inputs]
            for k in (0, 1):
                other = others[1 - k]
                if known[k] is not None and other is not None and (not other or other[-1] in (1, known[k])):
                    last[n.outputs[0]] = known[k]
        elif n.kind == "standard" and n.proto.op_type == "ReduceSum" and last.get(n.inputs[0]) == 1:
            attrs = {a.name: helper.get_attribute_value(a) for a in n.proto.attribute}
            if opset < 13:
                axes = list(attrs.get("axes", []))
            elif len(n.inputs) > 1 and n.inputs[1] in shapes:
                axes = [int(a) for a in np.ravel(numpy_helper.to_array(
                    next(t for t in initializers if t.name == n.inputs[1])))]
            else:
                axes = None
            if axes == [-1]:
                found[id(n)] = bool(attrs.get("keepdims", 1))
    return found


def _subgraph_inputs(nodes: list[onnx.NodeProto]) -> set[str]:
    """Outer-scope names read by the subgraphs (Loop bodies) of ``nodes``."""
    names: set[str] = set()
    for n in nodes:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                names |= {i for m in a.g.node for i in m.input} | _subgraph_inputs(list(a.g.node))
    return names


class OnnxRuntimeRuntime:
    """Executes an artifact in onnxruntime through ``to_standard_onnx`` (one session per T, cached).

    ``threads`` is onnxruntime's intra-op thread count (1 by default: the comparison runs single-threaded);
    ``providers`` defaults to ``["CPUExecutionProvider"]``; ``padfree``: see ``to_standard_onnx``.  When the
    whole artifact is row-wise
    (``rows.row_inputs``) a large batch runs as chunks of ``chunk_rows`` rows (None: about
    ``CHUNK_NEURON_STATES`` neuron states per chunk, so the loop's tensors stay in cache; 0: never), the
    outputs concatenated and the spike counts summed."""

    def __init__(self, model: onnx.ModelProto, timesteps: int, threads: int = 1,
                 providers: list[str] | None = None, chunk_rows: int | None = None, padfree: bool = True):
        import onnxruntime as ort

        self._ort = ort
        self.model, self.timesteps = model, int(timesteps)
        self.threads, self.providers = int(threads), providers or ["CPUExecutionProvider"]
        self.output_names = [o.name for o in model.graph.output]
        ifs = [n for n in model.graph.node if n.domain == spec.DOMAIN and n.op_type == spec.IF_OP]
        self.if_names = [n.name or n.output[0] for n in ifs]
        self.rows, self.padfree = row_inputs(model), bool(padfree)
        if chunk_rows is None:
            shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
            inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
            layers = find_padfree_layers(list(model.graph.node), inits, set(self.output_names), opset) \
                if padfree else {}
            blocks = [sum(layers[name].sizes) if name in layers
                      else int(np.prod(shapes.get(n.input[spec.IF_THETA_POS], (1,))))
                      for name, n in zip(self.if_names, ifs)]
            chunk_rows = chunk_size(sum(blocks), len(blocks), CHUNK_NEURON_STATES, MIN_OP_ELEMENTS)
        self.chunk_rows = int(chunk_rows)
        self._sessions: dict[int, object] = {}
        self.session(self.timesteps)

    def session(self, timesteps: int):
        """The onnxruntime session of the standard-ONNX variant for ``timesteps`` steps."""
        T = int(timesteps)
        if T not in self._sessions:
            options = self._ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3
            standard = to_standard_onnx(self.model, T, padfree=self.padfree)
            try:
                self._sessions[T] = self._ort.InferenceSession(standard.SerializeToString(), options,
                                                               providers=self.providers)
            except Exception as e:  # noqa: BLE001 - onnxruntime raises several types
                raise ArtifactError(f"onnxruntime cannot load the standard-ONNX variant: "
                                    f"{first_line(e)}") from None
        return self._sessions[T]

    def run(self, inputs: dict[str, np.ndarray], timesteps: int | None = None) -> RunResult:
        T = int(timesteps or self.timesteps)
        if T <= 0:
            raise ArtifactError(f"timesteps must be positive, got {T}")
        session = self.session(T)
        names = self.output_names + [p + n for n in self.if_names
                                     for p in (EVENTS_PREFIX, NEURONS_PREFIX, BATCH_PREFIX)]
        firsts = {np.shape(inputs[name])[0] for name in self.rows or [] if name in inputs}
        if len(firsts) == 1 and self.chunk_rows and self.chunk_rows < min(firsts):
            parts = [self._session_run(session, names, {k: (v[rows] if k in self.rows else v)
                                                        for k, v in inputs.items()})
                     for rows in chunks(firsts.pop(), self.chunk_rows)]
            values = {name: np.concatenate([p[k] for p in parts]) if k < len(self.output_names)
                      else sum(int(p[k]) for p in parts) for k, name in enumerate(names)}
            for n in self.if_names:
                values[NEURONS_PREFIX + n] = parts[0][names.index(NEURONS_PREFIX + n)]
        else:
            values = dict(zip(names, self._session_run(session, names, inputs)))
        spikes = {n: SpikeCounts(events=int(values[EVENTS_PREFIX + n]), neurons=int(values[NEURONS_PREFIX + n]),
                                 batch=int(values[BATCH_PREFIX + n]), timesteps=T) for n in self.if_names}
        return RunResult(outputs={name: values[name] for name in self.output_names}, spikes=spikes)

    @staticmethod
    def _session_run(session, names: list[str], feeds: dict) -> list:
        try:
            return session.run(names, feeds)
        except Exception as e:  # noqa: BLE001 - onnxruntime's exceptions name the failing node
            raise ArtifactError(f"onnxruntime: {first_line(e)}") from None
