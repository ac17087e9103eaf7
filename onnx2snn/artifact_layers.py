"""An artifact read as spiking layers joined by affine maps: the shape NIR can carry.

Every tensor of the artifact's graph (``runtimes.spec``) is either a constant or an *affine form*::

    x = c + Σ_s  src_s · M_s          M_s [d_s, *features],  c [*features]   (the batch axis implicit)

of *sources* s: a graph input (analog and static: direct encoding feeds the same value at every step) or
the spikes of an IF node (amplitude-valued, s(t) ∈ {-θ-, 0, +θ+}, flattened to its n·K neurons in
row-major (unit, slot) order).  Standard ops that are affine in their non-constant inputs map forms to
forms: MatMul and Gemm by a constant matrix, Add / Sub of forms and constants, Mul / Div by a constant,
Neg, ReduceSum over feature axes, Identity, and Reshape, Flatten, Squeeze, Unsqueeze and Transpose that
keep each point's values in its row (the same values over new feature axes: M_s and c reshaped or their
feature axes permuted); a node whose inputs are all constants is evaluated.  A Decode passes its input's
form on, marked decoded: the mean over T of an affine form of the sources is the same form of the
sources' means, so any affine map after it folds into the readout.

The result (``SpikingLayers``) holds, per IF node in graph order, the current of each *live* neuron
(θ+ finite, or signed with θ- finite; padding neurons never fire and are dropped)::

    I_j(t) = c_j + Σ_s src_s(t) · M_s[:, j]       (the unit's current z plus the neuron's bias β)

and per graph output its decoded form.  What NIR cannot carry is refused with one line naming the node
(``ModelError``): an analog node that is not an affine map (an activation left analog, an Einsum, a
product of two signals), a rearrangement across the batch axis, a spiking layer fed through a Decode (a
second stage of T steps), the phase code, a leak λ < 1, a graph output that is not decoded.  Nothing is
exported partially.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from runtimes import spec
from runtimes.chain import REARRANGING
from runtimes.network import artifact_timesteps, metadata
from runtimes.neuron import live_mask
from runtimes.ops import make_kernel
from runtimes.schedule import if_attributes, if_coding

from .errors import ModelError
from .graph_index import GraphIndex


class Diagonal:
    """The term of a source onto a tensor of its own shape F: M[i, f] = scale[f] where f is the source's
    i-th position (row-major).  An IF node's spikes [n, K] are this (scale 1) until their decode sums over
    K; kept implicit, since dense it has (n·K)² entries."""

    def __init__(self, scale: np.ndarray):
        self.scale = scale

    def dense(self) -> np.ndarray:
        return np.diag(self.scale.ravel()).reshape((self.scale.size,) + self.scale.shape)

    def reduce(self, axes: tuple[int, ...], keep: bool) -> np.ndarray:
        """Σ over the feature ``axes`` (0-based): dense [size, *reduced]."""
        shape = self.scale.shape
        position = np.unravel_index(np.arange(self.scale.size), shape)
        out_shape = tuple(1 if a in axes else d for a, d in enumerate(shape) if keep or a not in axes)
        out_index = tuple(np.zeros_like(p) if a in axes else p for a, p in enumerate(position)
                          if keep or a not in axes)
        out = np.zeros((self.scale.size,) + out_shape)
        out[(np.arange(self.scale.size),) + out_index] = self.scale.ravel()
        return out


def _dense(m: np.ndarray | Diagonal) -> np.ndarray:
    return m.dense() if isinstance(m, Diagonal) else m


@dataclass
class Form:
    """``c + Σ_s src_s · terms[s]``: ``terms[s]`` [d_s, *features] (or a ``Diagonal``), ``const``
    [*features] (float64)."""

    terms: dict[str, np.ndarray | Diagonal]
    const: np.ndarray
    decoded: bool = False

    @property
    def features(self) -> tuple[int, ...]:
        return self.const.shape

    def map(self, f) -> "Form":
        """The form of ``f(x)`` for a linear ``f`` acting on the feature axes (the source axis leads)."""
        return Form({s: f(_dense(m)) for s, m in self.terms.items()}, f(self.const), self.decoded)

    def scaled(self, factor: np.ndarray) -> "Form":
        """The form of ``x ⊙ factor`` (factor broadcast over the feature axes)."""
        factor = np.asarray(factor, np.float64)
        terms = {}
        for s, m in self.terms.items():
            keeps = isinstance(m, Diagonal) and np.broadcast_shapes(m.scale.shape, factor.shape) == m.scale.shape
            terms[s] = Diagonal(m.scale * factor) if keeps else _dense(m) * factor
        return Form(terms, self.const * factor, self.decoded)

    def reduced(self, axes: tuple[int, ...], keep: bool) -> "Form":
        """The form of the sum over the feature ``axes`` (0-based)."""
        terms = {s: m.reduce(axes, keep) if isinstance(m, Diagonal) else m.sum(axis=tuple(a + 1 for a in axes),
                                                                                  keepdims=keep)
                 for s, m in self.terms.items()}
        return Form(terms, self.const.sum(axis=axes, keepdims=keep), self.decoded)

    def plus(self, other: "Form | np.ndarray", sign: float = 1.0) -> "Form":
        if not isinstance(other, Form):
            other = Form({}, np.asarray(other, np.float64))
        shape = np.broadcast_shapes(self.features, other.features)
        if not other.terms and shape == self.features:
            return Form(dict(self.terms), self.const + sign * other.const, self.decoded)
        terms = {s: np.broadcast_to(_dense(m), (_dense(m).shape[0],) + shape).copy() for s, m in self.terms.items()}
        for s, m in other.terms.items():
            m = sign * np.broadcast_to(_dense(m), (_dense(m).shape[0],) + shape)
            terms[s] = terms[s] + m if s in terms else m.copy()
        return Form(terms, np.broadcast_to(self.const, shape) + sign * other.const, self.decoded or other.decoded)


@dataclass
class SpikingLayer:
    """An IF node's live neurons: ``neurons`` their flat (unit, slot) indices [M]; ``current`` their
    input current (``Form`` with features [M]); per neuron ``theta_pos``, ``theta_neg``, ``v0`` [M]
    (float64), and the layer's ``signed`` and fire fraction a."""

    name: str
    neurons: np.ndarray
    current: Form
    theta_pos: np.ndarray
    theta_neg: np.ndarray
    v0: np.ndarray
    signed: bool
    fire_fraction: float

    @property
    def size(self) -> int:
        return len(self.neurons)


@dataclass
class SpikingLayers:
    """The artifact as NIR sees it: ``inputs`` (name → features), ``layers`` in graph order, ``readouts``
    (graph output name → decoded ``Form`` with features [d]), ``timesteps`` and the artifact's metadata."""

    inputs: dict[str, int]
    layers: list[SpikingLayer]
    readouts: dict[str, Form]
    timesteps: int
    metadata: dict[str, str] = field(default_factory=dict)


def spiking_layers(model: onnx.ModelProto, source: str = "artifact") -> SpikingLayers:
    """Read ``model`` (a rate-coded artifact) as ``SpikingLayers``; raises ``ModelError`` naming the
    node NIR cannot carry."""
    timesteps = artifact_timesteps(model, source)
    index = GraphIndex(model)
    opsets = {o.domain or "": o.version for o in model.opset_import}
    values: dict[str, Form | np.ndarray] = {k: v for k, v in index.constants.items()}
    inputs = {}
    for value in model.graph.input:
        if value.name in index.constants:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 2 or not dims[1].HasField("dim_value"):
            raise ModelError(f"{source}: input '{value.name}' is not [batch, features]; NIR export takes inputs "
                             f"of rank 2")
        width = dims[1].dim_value
        inputs[value.name] = width
        values[value.name] = Form({value.name: np.eye(width)}, np.zeros(width))
    layers = []
    for node in index.nodes:
        name = node.name or node.output[0]
        args = [values.get(i) if i else None for i in node.input]
        if any(a is None for a, i in zip(args, node.input) if i):
            raise ModelError(f"node '{name}': an input is computed after it; the graph is not in topological order")
        if node.domain == spec.DOMAIN and node.op_type == spec.IF_OP:
            layer = _if_layer(node, name, args)
            layers.append(layer)
            n, k = np.shape(args[spec.IF_THETA_POS])
            values[node.output[spec.IF_SPIKES]] = Form({name: Diagonal(np.ones((n, k)))}, np.zeros((n, k)))
            if len(node.output) > 1 and node.output[spec.IF_MEMBRANE_OUT] in index.consumers:
                raise ModelError(f"node '{name}': its membrane output is read by another node; NIR carries spikes only")
        elif node.domain == spec.DOMAIN and node.op_type == spec.DECODE_OP:
            form = args[0]
            values[node.output[0]] = Form(form.terms, form.const, True) if isinstance(form, Form) else form
        elif all(not isinstance(a, Form) for a in args):
            values.update(zip(node.output, make_kernel(node, opsets)(args)))
        else:
            values[node.output[0]] = _affine(node, name, args, index)
    readouts = {}
    for name in index.outputs:
        form = values[name]
        if not isinstance(form, Form) or not form.decoded or len(form.features) != 1:
            raise ModelError(f"output '{name}': not a decoded vector of the spiking layers; NIR export needs every "
                             f"output to be the time average (Decode) of an affine map of spikes")
        readouts[name] = form
    return SpikingLayers(inputs, layers, readouts, timesteps, metadata(model))


def _if_layer(node: onnx.NodeProto, name: str, args: list) -> SpikingLayer:
    signed, fire_fraction, leak = if_attributes(node)
    if if_coding(node) != spec.CODING_RATE:
        raise ModelError(f"node '{name}': phase coding (weighted spikes, thresholds halving every step) has no NIR "
                         f"node; export a rate-coded conversion")
    if leak != 1.0:
        raise ModelError(f"node '{name}': leak {leak:g} per step; NIR's leaky neurons are continuous-time (the "
                         f"consumer picks dt), so it is not exported")
    current = args[spec.IF_CURRENT]
    params = [args[k] for k in (spec.IF_MEMBRANE, spec.IF_BIAS, spec.IF_THETA_POS, spec.IF_THETA_NEG)]
    if any(isinstance(p, Form) or p is None for p in params):
        raise ModelError(f"node '{name}': initial potential, bias and thresholds must be constants for NIR export")
    if not isinstance(current, Form):
        raise ModelError(f"node '{name}': its current is a constant; nothing drives the layer")
    if current.decoded:
        raise ModelError(f"node '{name}': its current comes through a Decode (a second stage of T steps); NIR has no "
                         f"stage boundary")
    theta_pos, theta_neg = (np.asarray(p, np.float64) for p in params[2:])
    n, k = theta_pos.shape
    v0, bias = (_per_neuron(p, (n, k), name) for p in params[:2])
    if len(current.features) != 1 or current.features[0] not in (1, n):
        raise ModelError(f"node '{name}': current of shape {list(current.features)} for {n} units")
    live = np.flatnonzero(live_mask(theta_pos, theta_neg, signed))
    units = live // k if current.features[0] == n else np.zeros_like(live)
    per_neuron = current.map(lambda m: m[..., units])
    per_neuron = per_neuron.plus(bias.reshape(-1)[live])
    return SpikingLayer(name, live, per_neuron, theta_pos.reshape(-1)[live], theta_neg.reshape(-1)[live],
                        v0.reshape(-1)[live], signed, fire_fraction)


def _per_neuron(value: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """An [n, K] parameter from a constant broadcast to it (leading axes of size 1 dropped)."""
    value = np.asarray(value, np.float64)
    if value.ndim > 2:
        if any(d != 1 for d in value.shape[:-2]):
            raise ModelError(f"node '{name}': a per-point initial potential or bias; NIR export needs one per neuron")
        value = value.reshape(value.shape[-2:])
    return np.broadcast_to(value, shape)


def _affine(node: onnx.NodeProto, name: str, args: list, index: GraphIndex) -> Form:
    """The form of a standard node's output, for the ops affine in their non-constant inputs."""
    op = node.op_type
    forms = [isinstance(a, Form) for a in args]
    x = args[0]
    if op == "Identity":
        return x
    if op == "Neg":
        return x.scaled(-1.0)
    if op in ("Add", "Sub") and len(args) == 2:
        sign = 1.0 if op == "Add" else -1.0
        if forms[0]:
            return x.plus(_feature_constant(args[1], x, name), sign) if not forms[1] else x.plus(args[1], sign)
        return args[1].scaled(sign).plus(_feature_constant(x, args[1], name))
    if op in ("Mul", "Div") and forms.count(True) == 1:
        form, other = (x, args[1]) if forms[0] else (args[1], x)
        if op == "Div" and not forms[0]:
            raise ModelError(f"node '{name}' (Div): a constant divided by a signal is not affine; NIR export refused")
        factor = _feature_constant(other, form, name)
        factor = 1.0 / factor if op == "Div" else factor
        return form.scaled(factor)
    if op == "MatMul" and forms == [True, False] and np.ndim(args[1]) == 2:
        return x.map(lambda m: m @ np.asarray(args[1], np.float64))
    if op == "Gemm" and forms[0] and not any(forms[1:]):
        at = index.attrs(node)
        if at.get("transA", 0):
            raise ModelError(f"node '{name}' (Gemm): transA of a signal mixes the batch axis; NIR export refused")
        w = np.asarray(args[1], np.float64)
        w = (w.T if at.get("transB", 0) else w) * at.get("alpha", 1.0)
        y = x.map(lambda m: m @ w)
        return y.plus(at.get("beta", 1.0) * np.asarray(args[2], np.float64)) if len(args) > 2 and args[2] is not None \
            else y
    if op == "ReduceSum":
        return _reduce_sum(node, name, x, args, index)
    if op in REARRANGING and forms[0] and not any(forms[1:]):
        return _rearranged(node, name, x, args, index)
    raise ModelError(f"node '{name}' ({op}): an analog op that is not an affine map of the spikes or inputs; NIR "
                     f"export carries spiking layers and affine maps only, so the artifact is not exported")


def _feature_constant(value: np.ndarray, form: Form, name: str) -> np.ndarray:
    """A constant operand over the feature axes: leading axes beyond them (the batch axis) must be 1."""
    value = np.asarray(value, np.float64)
    extra = value.ndim - len(form.features)
    if extra > 0:
        if any(d != 1 for d in value.shape[:extra]):
            raise ModelError(f"node '{name}': a constant of shape {list(value.shape)} varies along the batch axis")
        value = value.reshape(value.shape[extra:])
    return value


def _rearranged(node: onnx.NodeProto, name: str, x: Form, args: list, index: GraphIndex) -> Form:
    """The form of a Reshape, Flatten, Squeeze, Unsqueeze or Transpose that keeps each point's values in its
    row: the same values over new feature axes (a linear map, folded into the terms); one that moves values
    across the batch axis is refused."""
    op, at, features = node.op_type, index.attrs(node), x.features
    rank = 1 + len(features)

    def axes_of() -> list[int]:
        axes = at.get("axes") if len(args) < 2 or args[1] is None else [int(a) for a in np.ravel(args[1])]
        return [] if axes is None else list(axes)

    def across_batch() -> ModelError:
        return ModelError(f"node '{name}' ({op}): moves values across the batch axis; NIR export refused")

    if op == "Transpose":
        perm = list(at.get("perm", range(rank - 1, -1, -1)))
        if perm[0] != 0:
            raise across_batch()
        order = [a - 1 for a in perm[1:]]
        return x.map(lambda m: np.moveaxis(m, [m.ndim - len(features) + a for a in order],
                                           list(range(m.ndim - len(features), m.ndim))))
    if op == "Flatten":
        if at.get("axis", 1) % rank != 1:
            raise across_batch()
        shape: list[int] = [int(np.prod(features))]
    elif op == "Squeeze":
        axes = {a % rank for a in axes_of()} or {a + 1 for a, d in enumerate(features) if d == 1}
        if 0 in axes:
            raise across_batch()
        shape = [d for a, d in enumerate(features) if a + 1 not in axes]
    elif op == "Unsqueeze":
        axes = axes_of()
        out_rank = rank + len(axes)
        if 0 in {a % out_rank for a in axes}:
            raise across_batch()
        shape = list(features)
        for a in sorted(a % out_rank for a in axes):
            shape.insert(a - 1, 1)
    else:
        target = [int(d) for d in np.ravel(args[1])]
        if target[0] not in (0, -1) or at.get("allowzero", 0) and 0 in target:
            raise across_batch()
        shape = [features[a] if d == 0 and a < len(features) else d for a, d in enumerate(target[1:])]
        if -1 in shape:
            known = int(np.prod([d for d in shape if d != -1]))
            shape[shape.index(-1)] = int(np.prod(features)) // max(known, 1)
        if int(np.prod(shape)) != int(np.prod(features)):
            raise across_batch()
    return x.map(lambda m: m.reshape(m.shape[:m.ndim - len(features)] + tuple(shape)))


def _reduce_sum(node: onnx.NodeProto, name: str, x: Form, args: list, index: GraphIndex) -> Form:
    at = index.attrs(node)
    axes = at.get("axes") if len(args) < 2 or args[1] is None else [int(a) for a in np.ravel(args[1])]
    rank = 1 + len(x.features)
    if axes is None or len(axes) == 0:
        raise ModelError(f"node '{name}' (ReduceSum): a sum over every axis mixes the batch; NIR export refused")
    feature_axes = sorted({(a % rank) for a in axes})
    if 0 in feature_axes:
        raise ModelError(f"node '{name}' (ReduceSum): a sum over the batch axis; NIR export refused")
    return x.reduced(tuple(a - 1 for a in feature_axes), bool(at.get("keepdims", 1)))
