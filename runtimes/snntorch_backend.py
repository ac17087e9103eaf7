"""Run an artifact with PyTorch, its IF layers as snnTorch neurons (CPU or CUDA, batched).

``SignedIF`` is ``spec.IF`` as an snnTorch neuron (a ``snntorch.SpikingNeuron``): per-neuron firing levels
and spike amplitudes [n, K], bias β, fire fraction a, leak λ, signed or unsigned, reset by subtraction of
the emitted amplitude.  One step, state passed explicitly (``init_hidden=False``, nothing kept in the
module)::

    u  = λ·v + (z[..., None] + β)          (λ = 1: u = v + (z[..., None] + β), no multiply)
    s  = +θ+ if u >= a·θ+;  -θ- if signed and u <= -a·θ-;  else 0
    v' = u - s

snnTorch's vocabulary: ``threshold`` is the firing level a·θ+ and ``graded_spikes_factor`` the amplitude
θ+ (graded spikes) of the positive side; ``threshold_neg`` (= -a·θ-) and ``graded_neg`` (= θ-) those of the
negative side; ``beta`` is the leak λ, the membrane decay of ``snntorch.Leaky`` (with ``reset_delay=False``
that neuron also steps u = β·v + z, then v' = u - s).  A neuron with θ = inf (padding) never fires; its
amplitude is stored as 0 so that 0·amplitude stays 0.  The levels are computed in numpy exactly as
``neuron.fire`` computes them, and ``H(u - level)`` with H(x) = [x >= 0] equals ``[u >= level]`` in IEEE
arithmetic, so the spikes are those of the numpy neuron bit for bit given the same currents.  A signed
neuron is not a pair of unsigned ones: it has one membrane and fires at most one (positive or negative)
spike per step.

``SnnTorchRuntime`` follows the numpy reference runtime's schedule (``runtimes.schedule``: analog nodes run
once, in numpy, with the numpy kernels of ``runtimes.ops``) and runs each stage's T-step loop in torch on
``device``: MatMul/Gemm/Add/Sub/Mul/Div/ReduceSum/Squeeze/Unsqueeze/Reshape/Flatten/Transpose and
elementwise activations as torch ops, IF nodes as ``SignedIF``, Decodes as running sums Σ_t x(t) divided
by T in numpy at the end; any other standard op on the step path falls back to its numpy kernel.  Tensors
keep the artifact's dtype (float32 or float64).  Threads are torch's (``torch.set_num_threads``); the
library never changes them.

Speed without changing a single value: within a step a tensor whose last reader is the current node is
updated in place (ownership is tracked, so shared storage is never written); a ReduceSum over axes of
size 1 is a reshape (the sum of one number is that number); layers that are mostly θ = inf padding run
padding-free (``runtimes.padfree``); and on CPU a stage whose step ops all act row
by row on the batch (``rows.out_rank``) runs its T-step loop on chunks of rows sized to stay in cache,
the results concatenated.  Float differences from numpy come only from MatMul/ReduceSum summation order.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import snntorch
import torch
from onnx import helper, numpy_helper

from . import spec
from .chain import REARRANGING
from .errors import ArtifactError, first_line
from .neuron import live_mask
from .numpy_ref import RunResult, SpikeCounts
from .padfree import PadFreeLayer, find_padfree_layers
from .rows import chunk_size, out_rank
from .schedule import PlannedNode, run_static, schedule

# Rows per chunk on CPU (``rows.chunk_size``): about this many neuron states (over all IF nodes of a stage)
# per chunk, so that the loop's tensors stay in cache, but at least this many elements per neuron block and
# op, so that torch's per-op overhead stays small (tuned on a 2 MiB-L2 Xeon).
CHUNK_NEURON_STATES = 1 << 19
MIN_OP_ELEMENTS = 1 << 16
# Below this many elements a float32 sum of 0/1 spike indicators is exact (every partial sum is an integer
# < 2^24); above it spikes are counted with count_nonzero.
_EXACT_COUNT = 1 << 24
# Points per chunk on a GPU (``SnnTorchRuntime.block_rows``): as many as fit in CUDA_MEMORY_FRACTION of the
# free device memory at CUDA_BYTES_PER_NEURON bytes per dense neuron slot and point, at most CUDA_MAX_ROWS.
# Measured on an H100 (T = 32, 100,000 points; peak bytes per dense slot and point: poisson1d 3.2 with its
# padding-free layers, wave 13, Burgers 14, poisson1d with one neuron per unit 18): neuron updates per
# second rise with the chunk (poisson1d default 3.7e9 at 4,096 rows, 1.1e10 at 16,384, 1.3e10 at 65,536,
# 1.4e10 at 100,000), since small chunks leave the GPU waiting for kernel launches.
CUDA_BYTES_PER_NEURON = 24
CUDA_MEMORY_FRACTION = 0.5
CUDA_MAX_ROWS = 1 << 17
CUDA_MIN_ROWS = 256
TORCH_CPU_ROWS = 1024  # snnTorch on CPU: larger blocks leave cache, smaller ones pay per-op overhead


class HeavisideGE(torch.autograd.Function):
    """Forward: H(x) = 1 if x >= 0 else 0 (in x's dtype; spec.IF fires *at* the level).  Backward: the
    arc-tangent surrogate of snnTorch, ∂H/∂x ≈ (α/2) / (1 + (π α x / 2)²), α = 2."""

    @staticmethod
    def forward(ctx, x, alpha=2.0):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return ctx.alpha / 2 / (1 + (math.pi / 2 * ctx.alpha * x).pow(2)) * grad_output, None


def heaviside_ge(x: torch.Tensor) -> torch.Tensor:
    return HeavisideGE.apply(x)


class SignedIF(snntorch.SpikingNeuron):
    """``spec.IF`` as an snnTorch neuron; ``forward(current [..., n], mem [n, K] | [..., n, K])`` returns
    ``(spikes, mem')``, both [..., n, K], amplitude-valued (see the module docstring).

    Parameters are numpy arrays [n, K] (``bias``, ``theta_pos``, ``theta_neg``) of the artifact's dtype.
    ``forward`` goes through snnTorch's ``spike_grad(mem - threshold) * graded_spikes_factor`` with the
    ``HeavisideGE`` surrogate (differentiable); ``step_`` is the in-place inference step the runtime uses.
    Both give the same values."""

    def __init__(self, bias: np.ndarray, theta_pos: np.ndarray, theta_neg: np.ndarray, signed: bool,
                 fire_fraction: float, name: str = "", leak: float = 1.0, coding: str = spec.CODING_RATE):
        theta_pos, theta_neg = np.asarray(theta_pos), np.asarray(theta_neg)
        with np.errstate(invalid="ignore", over="ignore"):
            level_pos = fire_fraction * theta_pos          # exactly as neuron.fire computes them
            level_neg = -fire_fraction * theta_neg
        amp_pos = np.where(np.isfinite(theta_pos), theta_pos, 0).astype(theta_pos.dtype)
        amp_neg = np.where(np.isfinite(theta_neg), theta_neg, 0).astype(theta_neg.dtype)
        super().__init__(threshold=torch.tensor(level_pos), spike_grad=heaviside_ge, init_hidden=False,
                         reset_mechanism="subtract", graded_spikes_factor=torch.tensor(amp_pos))
        # snnTorch registers every neuron in a class-level list (for init_hidden); keep no global state.
        if self in snntorch.SpikingNeuron.instances:
            snntorch.SpikingNeuron.instances.remove(self)
        self.name, self.signed, self.fire_fraction = name, bool(signed), float(fire_fraction)
        self.leaky = float(leak) != 1
        self.register_buffer("beta", torch.tensor(np.asarray(leak, theta_pos.dtype)))   # λ in the dtype
        self.register_buffer("bias", torch.tensor(np.asarray(bias)))
        self.zero_bias = not np.any(bias)
        self.register_buffer("threshold_neg", torch.tensor(level_neg))
        self.register_buffer("graded_neg", torch.tensor(amp_neg))
        self.phase = coding == spec.CODING_PHASE
        self.register_buffer("rest", torch.tensor(np.asarray(1 - fire_fraction, theta_pos.dtype)))  # delta: 1 - a
        if self.phase:      # the membrane's bounds at the first step (spec)
            lower = -theta_neg if signed else np.full_like(theta_pos, -np.inf)
            self.register_buffer("upper", torch.tensor(theta_pos))
            self.register_buffer("lower", torch.tensor(np.asarray(lower, theta_pos.dtype)))

    def integrate(self, current: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        """u = λ·v + (z[..., None] + β)."""
        return (mem * self.beta if self.leaky else mem) + (current.unsqueeze(-1) + self.bias)

    def fire(self, mem: torch.Tensor) -> torch.Tensor:
        """Amplitude-valued spikes of an integrated membrane ``mem`` (= u)."""
        spikes = self.spike_grad(mem - self.threshold) * self.graded_spikes_factor
        if self.signed:
            spikes = spikes - self.spike_grad(self.threshold_neg - mem) * self.graded_neg
        return spikes

    def forward(self, current: torch.Tensor, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.integrate(current, mem)
        spikes = self.fire(u)
        return spikes, u - spikes

    def step_(self, current: torch.Tensor, mem: torch.Tensor, owned: bool,
              workspace: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inference step without autograd: returns (spikes, mem', events).

        ``mem`` is updated in place when ``owned`` (the runtime's own state, not v0).  Spikes are written
        into a buffer of ``workspace`` that is reused every step; ``events`` is the number of non-zero
        spikes (a 0-d tensor, so a CUDA run does not synchronise per step)."""
        x = current.unsqueeze(-1)                               # x = z + β, then u = λ·v + x (spec order);
        if not self.zero_bias:                                  # z + 0 = z up to the sign of a zero
            x = x + self.bias
        if self.leaky:                                          # λ·v: a new tensor unless owned
            mem, owned = mem.mul_(self.beta) if owned else mem * self.beta, True
        u = mem.add_(x) if owned and mem.shape == torch.broadcast_shapes(mem.shape, x.shape) else mem + x
        spikes = workspace.get("spikes")
        if spikes is None or spikes.shape != u.shape:
            spikes = workspace["spikes"] = torch.empty_like(u)
        torch.ge(u, self.threshold, out=spikes)                 # 1.0 where u >= a·θ+
        exact = spikes.numel() < _EXACT_COUNT
        events = spikes.sum() if exact else None
        spikes.mul_(self.graded_spikes_factor)
        if self.signed:
            neg = workspace.get("neg")
            if neg is None or neg.shape != u.shape:
                neg = workspace["neg"] = torch.empty_like(u)
            torch.le(u, self.threshold_neg, out=neg)            # 1.0 where u <= -a·θ-
            if exact:
                events = events + neg.sum()
            spikes.sub_(neg.mul_(self.graded_neg))
        if not exact:
            events = torch.count_nonzero(spikes)
        return spikes, u.sub_(spikes), events


    def delta_step(self, x: torch.Tensor, sent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One point of a delta-coded layer (``spec``, ``neuron.delta_step``): ``x`` = a + β [..., n, 1] (the
        activation plus the bias, added as numpy adds it), ``sent`` r [..., n, 1]; returns (s = k·θ±, r + s,
        |k|).  The same float operations as numpy, so the same bits given the same activations."""
        u = x - sent
        zero = torch.zeros((), dtype=u.dtype, device=u.device)
        up = torch.where(u >= self.threshold, torch.floor(u / self.graded_spikes_factor + self.rest).clamp_min_(1), zero)
        down = torch.where(u <= self.threshold_neg, torch.floor(-u / self.graded_neg + self.rest).clamp_min_(1), zero)
        s = up * self.graded_spikes_factor - down * self.graded_neg
        return s, sent + s, up + down

    def phase_step(self, current: torch.Tensor, mem: torch.Tensor, step: int,
                   timesteps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step ``step`` (0 = the first) of a phase-coded layer (``spec``, ``neuron.phase_step``): returns
        (events T·d·θ±·2^-step, mem', number of events)."""
        if step == 0:
            u = mem + (current.unsqueeze(-1) + self.bias)
            u = torch.minimum(torch.maximum(u, self.lower), self.upper)
        else:
            u = mem
        scale = 2.0 ** -step                                    # exact in the dtype: the levels as numpy's
        pos = torch.ge(u, self.threshold * scale).to(u.dtype)
        digits = pos * (self.graded_spikes_factor * scale)
        events = pos.sum()
        if self.signed:
            neg = torch.le(u, self.threshold_neg * scale).to(u.dtype)
            digits = digits - neg * (self.graded_neg * scale)
            events = events + neg.sum()
        return digits * timesteps, u - digits, events


def _to_torch(array, device: torch.device) -> torch.Tensor:
    array = np.asarray(array)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")
    return torch.from_numpy(array).to(device)


def _attrs(node: PlannedNode) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.proto.attribute}


_BINARY = {"Add": (torch.add, "add_", True), "Sub": (torch.sub, "sub_", False),
           "Mul": (torch.mul, "mul_", True), "Div": (torch.div, "div_", False)}
_UNARY = {"Tanh": "tanh", "Sin": "sin", "Cos": "cos", "Exp": "exp", "Neg": "neg", "Relu": "relu",
          "Sigmoid": "sigmoid", "Abs": "abs"}
_VIEWS = ("Identity", *REARRANGING)     # outputs that may share their input's storage


def _static_axes(n: PlannedNode, values: dict, opset: int) -> list[int] | None:
    """The ``axes`` of ReduceSum/Squeeze/Unsqueeze (attribute before opset 13, a static input after)."""
    at = _attrs(n)
    if "axes" in at:
        return [int(a) for a in at["axes"]]
    if len(n.inputs) > 1 and n.inputs[1]:
        if n.inputs[1] not in values:
            raise KeyError(n.inputs[1])
        return [int(a) for a in np.ravel(values[n.inputs[1]])]
    return None


class _PadFreeIF(torch.nn.Module):
    """An IF node and its decode ``Mul(w) → ReduceSum(-1)`` run padding-free (``runtimes.padfree``): one
    ``SignedIF`` over the flat layer of M' neurons, one row per neuron (current [M', P] for P points,
    parameters [M', 1, 1]), fed by gathering rows of the transposed current; the decode summed per group
    of units ([n_k, k, P] over k) into y [n, P], returned transposed."""

    def __init__(self, layer: PadFreeLayer, node: PlannedNode, values: dict, device: torch.device):
        super().__init__()
        self.layer = layer
        bias, theta_pos, theta_neg, v0 = (layer.flat(values[node.inputs[k]])[:, :, None] for k in
                                          (spec.IF_BIAS, spec.IF_THETA_POS, spec.IF_THETA_NEG, spec.IF_MEMBRANE))
        self.neuron = SignedIF(bias, theta_pos, theta_neg, node.signed, node.fire_fraction,
                               name=f"{node.name}[flat]", leak=node.leak).to(device)
        self.v0, self.weight = _to_torch(v0, device), _to_torch(layer.flat(layer.weight), device)
        self.neuron_units = torch.from_numpy(layer.neuron_units).to(device)
        ends = np.cumsum(layer.sizes)
        self.groups = [(int(end - size), int(end), g.k, torch.from_numpy(g.units).to(device))
                       for g, size, end in zip(layer.groups, layer.sizes, ends)]

    def step(self, z: torch.Tensor, state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded unit values Σ_k w·s [..., n] (a transposed view of a buffer reused every step) and the
        number of events."""
        n = z.shape[-1]
        columns = z.reshape(-1, n).t().contiguous()                                  # [n, P]
        y = state.get("y")
        if y is None or y.shape != columns.shape or y.dtype != z.dtype:
            y = state["y"] = torch.empty_like(columns)
        mem, owned = state.get("mem", self.v0), state.get("owned", False)
        spikes, state["mem"], events = self.neuron.step_(columns.index_select(0, self.neuron_units), mem, owned,
                                                         state.setdefault("ws", {}))
        state["owned"] = True
        weighted = spikes.squeeze(-1).mul_(self.weight)                     # [M', P]
        for start, stop, k, units in self.groups:
            piece = weighted[start:stop]
            y.index_copy_(0, units, piece if k == 1 else piece.unflatten(0, (len(units), k)).sum(1))
        return y.t().reshape(z.shape), events


def torch_kernel(n: PlannedNode, values: dict, opset: int, device: torch.device):
    """The torch kernel ``f(inputs, may_overwrite) -> (outputs, owned)`` of standard node ``n`` (``_Stage``);
    an op without one runs its numpy kernel on host copies."""
    op, at = n.proto.op_type, _attrs(n)
    if op in _BINARY:
        f, inplace, commutative = _BINARY[op]

        def binary(x, free):
            a, b = x
            shape = torch.broadcast_shapes(a.shape, b.shape)
            dtype = torch.result_type(a, b)
            if free[0] and a.shape == shape and a.dtype == dtype:
                return [getattr(a, inplace)(b)], [True]
            if commutative and free[1] and b.shape == shape and b.dtype == dtype:
                return [getattr(b, inplace)(a)], [True]
            return [f(a, b)], [True]
        return binary
    if op in _UNARY:
        name = _UNARY[op]
        return lambda x, free: ([getattr(x[0], name + "_")()] if free[0] else [getattr(torch, name)(x[0])], [True])
    if op == "Identity":
        return lambda x, free: ([x[0]], [free[0]])
    if op == "MatMul":
        return lambda x, free: ([torch.matmul(x[0], x[1])], [True])
    if op == "Gemm":
        alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
        ta, tb = at.get("transA", 0), at.get("transB", 0)

        def gemm(x, free):
            y = (x[0].T if ta else x[0]) @ (x[1].T if tb else x[1])
            if alpha != 1.0:
                y.mul_(torch.tensor(alpha, dtype=y.dtype, device=y.device))
            if len(x) > 2 and x[2] is not None:
                c = x[2] if beta == 1.0 else x[2] * torch.tensor(beta, dtype=y.dtype, device=y.device)
                y = y.add_(c) if torch.broadcast_shapes(y.shape, c.shape) == y.shape else y + c
            return [y], [True]
        return gemm
    if op in ("ReduceSum", "Squeeze", "Unsqueeze"):
        try:
            axes = _static_axes(n, values, opset)
        except KeyError:
            return _fallback(n, device)
        if op == "ReduceSum":
            return _reduce_sum(n, axes, at)
        if op == "Squeeze":
            if axes is None:
                return lambda x, free: ([torch.squeeze(x[0])], [free[0]])
            return lambda x, free: ([x[0].squeeze(tuple(axes))], [free[0]])
        if axes is None:
            raise ArtifactError(f"node '{n.name}': Unsqueeze without axes")

        def unsqueeze(x, free):
            y, rank = x[0], x[0].dim() + len(axes)
            for a in sorted(a % rank for a in axes):
                y = y.unsqueeze(a)
            return [y], [free[0]]
        return unsqueeze
    if op in ("Reshape", "Flatten", "Transpose"):
        return _rearrange(n, values, at) or _fallback(n, device)
    return _fallback(n, device)


def _rearrange(n: PlannedNode, values: dict, at: dict):
    """Reshape (a static shape: 0 copies the input's dimension unless ``allowzero``, -1 is inferred), Flatten
    to [prod(dims before axis), prod(dims from axis)], Transpose by ``perm`` (reversed when absent), as torch
    views; None for a Reshape whose shape is computed in the stage (the numpy kernel runs it)."""
    op = n.proto.op_type
    if op == "Transpose":
        perm = at.get("perm")
        return lambda x, free: ([x[0].permute(*(perm or range(x[0].dim() - 1, -1, -1)))], [free[0]])
    if op == "Flatten":
        axis = at.get("axis", 1)

        def flatten(x, free):
            a = x[0]
            k = axis % a.dim() if a.dim() else 0
            return [a.reshape(int(np.prod(a.shape[:k], dtype=np.int64)), -1)], [free[0]]
        return flatten
    if n.inputs[1] not in values:
        return None
    shape, copy = [int(d) for d in np.ravel(values[n.inputs[1]])], not at.get("allowzero", 0)
    return lambda x, free: ([x[0].reshape([x[0].shape[i] if d == 0 and copy else d for i, d in enumerate(shape)])],
                            [free[0]])


def _fallback(n: PlannedNode, device: torch.device):
    """Any other op: its numpy kernel (onnx.reference), on host copies."""

    def run(x, free):
        arrays = [None if a is None else a.detach().cpu().numpy() for a in x]
        outs = [_to_torch(a, device) for a in n.kernel(arrays)]
        return outs, [True] * len(outs)
    return run


class _Stage(torch.nn.Module):
    """One stage compiled to torch: per node a kernel ``f(inputs, may_overwrite) -> (outputs, owned)``;
    its neurons (``SignedIF`` modules) are submodules.

    ``may_overwrite[i]`` says input i is owned by this step and read by nobody after this node, so the
    kernel may write into it; ``owned`` says which outputs the later nodes may overwrite likewise."""

    def __init__(self, stage: list[PlannedNode], values: dict, opset: int, device: torch.device,
                 chunk_rows: int | None, constants: set[str], padfree: dict[str, PadFreeLayer]):
        super().__init__()
        self.nodes, self.device, self.opset = stage, device, opset
        padfree = {n.name: padfree[n.name] for n in stage if n.kind == spec.IF_OP and n.name in padfree}
        fused = {name for c in padfree.values() for name in (c.mul_node, c.reduce_node)}
        produced = {o for n in stage for o in n.outputs}
        self.static = sorted({i for n in stage for i in n.inputs if i and i not in produced})
        last_use: dict[str, int] = {}
        for k, n in enumerate(stage):
            for i in n.inputs:
                last_use[i] = k
        self.ops = []
        for k, n in enumerate(stage):
            dead = [bool(i) and i in produced and last_use[i] == k and n.inputs.count(i) == 1 for i in n.inputs]
            if n.name in fused:
                continue
            if n.kind == spec.IF_OP and n.name in padfree:
                self.ops.append(("padfree", n, _PadFreeIF(padfree[n.name], n, values, device),
                                 padfree[n.name].live, dead))
            elif n.kind == spec.IF_OP:
                theta_pos, theta_neg = values[n.inputs[spec.IF_THETA_POS]], values[n.inputs[spec.IF_THETA_NEG]]
                neuron = SignedIF(values[n.inputs[spec.IF_BIAS]], theta_pos, theta_neg, n.signed, n.fire_fraction,
                                  name=n.name, leak=n.leak, coding=n.coding).to(device)
                live = live_mask(theta_pos, theta_neg, n.signed)
                self.ops.append((spec.IF_OP, n, neuron, int(np.sum(live)), dead))
            elif n.kind == spec.DECODE_OP:
                self.ops.append((spec.DECODE_OP, n, None, 0, dead))
            else:
                self.ops.append(("standard", n, torch_kernel(n, values, self.opset, self.device), 0, dead))
        self.neurons = torch.nn.ModuleList([f for kind, n, f, *_ in self.ops if kind in (spec.IF_OP, "padfree")])
        self.rows = _row_inputs(stage, values, opset, constants) if device.type == "cpu" else None
        if chunk_rows is None and self.rows is not None:
            blocks = [sum(padfree[n.name].sizes) if n.name in padfree
                      else int(np.prod(values[n.inputs[spec.IF_THETA_POS]].shape))
                      for n in stage if n.kind == spec.IF_OP]
            chunk_rows = chunk_size(sum(blocks), len(blocks), CHUNK_NEURON_STATES, MIN_OP_ELEMENTS)
        self.chunk_rows = chunk_rows

    # ----- execution -----------------------------------------------------------------------------
    def run(self, values: dict, constants: dict, T: int, spikes: dict) -> None:
        static = {name: constants[name] if name in constants else _to_torch(values[name], self.device)
                  for name in self.static}
        for kind, n, f, live, _ in self.ops:
            if kind in (spec.IF_OP, "padfree"):
                spikes.setdefault(n.name, SpikeCounts(neurons=live))
        firsts = {static[name].shape[0] for name in self.rows or []}
        if len(firsts) != 1 or not self.chunk_rows or self.chunk_rows >= min(firsts):
            sums, events, batch = self._loop(static, T)
        else:
            parts = []
            for start in range(0, firsts.pop(), self.chunk_rows):
                chunk = dict(static)
                for name in self.rows:
                    chunk[name] = static[name][start:start + self.chunk_rows]
                parts.append(self._loop(chunk, T))
            sums = {k: torch.cat([p[0][k] for p in parts]) for k in parts[0][0]}
            events = {k: sum(p[1][k] for p in parts) for k in parts[0][1]}
            batch = {k: sum(p[2][k] for p in parts) for k in parts[0][2]}
        for kind, n, f, _live, _ in self.ops:
            if kind == spec.DECODE_OP:
                total = sums[n.name].cpu().numpy()
                values[n.outputs[0]] = total / np.asarray(T, total.dtype)
            elif kind in (spec.IF_OP, "padfree"):
                count = spikes[n.name]
                count.events += int(events[n.name].item())
                count.batch = int(batch[n.name])
                count.timesteps = T

    def _loop(self, static: dict, T: int) -> tuple[dict, dict, dict]:
        env: dict[str, torch.Tensor | None] = dict(static)
        env[""] = None
        membrane, own_membrane, sums, events, workspaces = {}, {}, {}, {}, {}
        for kind, n, f, _live, _ in self.ops:
            if kind in (spec.IF_OP, "padfree"):
                membrane[n.name], own_membrane[n.name] = env[n.inputs[spec.IF_MEMBRANE]], False
                events[n.name] = torch.zeros((), dtype=torch.float64, device=self.device)
                workspaces[n.name] = {}
        for t in range(T):
            owned: set[str] = set()
            for kind, n, f, _live, dead in self.ops:
                if kind == spec.IF_OP:
                    current = env[n.inputs[spec.IF_CURRENT]]
                    if f.phase:
                        s, membrane[n.name], count = f.phase_step(current, membrane[n.name], t, T)
                    else:
                        s, membrane[n.name], count = f.step_(current, membrane[n.name], own_membrane[n.name],
                                                             workspaces[n.name])
                        own_membrane[n.name] = True
                    events[n.name] += count
                    env[n.outputs[spec.IF_SPIKES]] = s
                    owned.add(n.outputs[spec.IF_SPIKES])
                    if len(n.outputs) > 1 and n.outputs[spec.IF_MEMBRANE_OUT]:
                        env[n.outputs[spec.IF_MEMBRANE_OUT]] = membrane[n.name]   # never overwritten by others
                elif kind == "padfree":
                    y, count = f.step(env[n.inputs[spec.IF_CURRENT]], workspaces[n.name])
                    events[n.name] += count
                    env[f.layer.output] = y
                    owned.add(f.layer.output)
                elif kind == spec.DECODE_OP:
                    x = env[n.inputs[0]]
                    if n.name in sums:
                        sums[n.name] += x
                    else:
                        sums[n.name] = x.clone()
                else:
                    free = [d and i in owned for i, d in zip(n.inputs, dead)]
                    try:
                        outs, out_owned = f([env[i] for i in n.inputs], free)
                    except RuntimeError as e:
                        raise ArtifactError(f"node '{n.name}' ({n.proto.op_type}) failed in torch: "
                                            f"{first_line(e)}") from None
                    if n.proto.op_type in _VIEWS or n.proto.op_type == "ReduceSum":
                        owned.discard(n.inputs[0])      # the output may share the input's storage
                    for name, tensor, own in zip(n.outputs, outs, out_owned):
                        env[name] = tensor
                        (owned.add if own else owned.discard)(name)
        batch = {n.name: int(np.prod(env[n.inputs[spec.IF_CURRENT]].shape[:-1], dtype=np.int64))
                 for kind, n, *_ in self.ops if kind in (spec.IF_OP, "padfree")}
        return sums, events, batch


def _reduce_sum(n: PlannedNode, axes: list[int] | None, at: dict):
    """ReduceSum; over axes of size 1 it is a reshape (exact: the sum of one number is that number)."""
    keep, noop = bool(at.get("keepdims", 1)), at.get("noop_with_empty_axes", 0)

    def run(x, free):
        a = x[0]
        if not axes:
            if noop:
                return [a], [free[0]]
            dims = tuple(range(a.dim()))
        else:
            dims = tuple(sorted(d % a.dim() for d in axes))
        if all(a.shape[d] == 1 for d in dims):
            return [a if keep else a.reshape([s for d, s in enumerate(a.shape) if d not in dims])], [free[0]]
        return [torch.sum(a, dim=dims, keepdim=keep)], [True]
    return run


def _row_inputs(stage: list[PlannedNode], values: dict, opset: int, constants: set[str]) -> list[str] | None:
    """If every step op of ``stage`` is row-wise (``rows.out_rank``), the names of the stage's static
    inputs to slice into chunks of rows (those that are not initializers and have rank >= 2; their first
    dimensions must agree at run time); else None."""
    produced = {o for n in stage for o in n.outputs}
    row = sorted({name for n in stage for name in n.inputs if name and name not in produced
                  and name not in constants and name in values and np.ndim(values[name]) >= 2})
    ranks = {name: np.ndim(values[name]) for name in row}
    shape = lambda name: np.shape(values[name]) if name in values else None
    for n in stage:
        r = out_rank(n.proto, [ranks.get(i) if i else None for i in n.inputs], shape, values.get, opset)
        if r is None or r is False:
            return None
        ranks.update({o: r for o in n.outputs if o})
    return row or None


class SnnTorchRuntime:
    """Executes an artifact with torch on ``device`` ("cpu", "cuda", "cuda:1", …); see the module docstring.

    Static (analog) nodes run in numpy, in the order of ``schedule``; every stage's time loop runs in torch.
    ``chunk_rows``: rows of the batch per chunk for row-wise stages on CPU (None: sized automatically,
    0: no chunking); CUDA runs the whole batch at once.  ``padfree``: run mostly-padding layers
    padding-free (``runtimes.padfree``)."""

    def __init__(self, model: onnx.ModelProto, timesteps: int, device: str | torch.device = "cpu",
                 chunk_rows: int | None = None, padfree: bool = True):
        self.model, self.timesteps = model, int(timesteps)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ArtifactError(f"backend 'snntorch': device '{device}' requested but CUDA is not available")
        self.chunk_rows = chunk_rows
        self.initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.output_names = [o.name for o in model.graph.output]
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.rounds = schedule(model)
        self.padfree = find_padfree_layers(list(model.graph.node), self.initializers, set(self.output_names),
                                           self.opset) if padfree else {}
        self._stages: dict[tuple, _Stage] = {}
        self._constants: dict[str, torch.Tensor] = {}

    def block_rows(self, dense_neurons: int) -> int:
        """Points per chunk for ``SpikingNetwork``: ``TORCH_CPU_ROWS`` on CPU; on a GPU as many as fit in
        ``CUDA_MEMORY_FRACTION`` of its free memory at ``CUDA_BYTES_PER_NEURON`` per dense neuron slot,
        clipped to [``CUDA_MIN_ROWS``, ``CUDA_MAX_ROWS``]."""
        if self.device.type == "cpu":
            return TORCH_CPU_ROWS
        free, _ = torch.cuda.mem_get_info(self.device)
        rows = int(free * CUDA_MEMORY_FRACTION) // (CUDA_BYTES_PER_NEURON * max(int(dense_neurons), 1))
        return min(max(rows, CUDA_MIN_ROWS), CUDA_MAX_ROWS)

    def run(self, inputs: dict[str, np.ndarray], timesteps: int | None = None) -> RunResult:
        T = int(timesteps or self.timesteps)
        if T <= 0:
            raise ArtifactError(f"timesteps must be positive, got {T}")
        values: dict[str, np.ndarray | None] = dict(self.initializers)
        values.update(inputs)
        values[""] = None
        spikes: dict[str, SpikeCounts] = {}
        with torch.inference_mode():
            for static, stage in self.rounds:
                for node in static:
                    run_static(node, values)
                if stage:
                    self._run_stage(stage, values, T, spikes)
        return RunResult(outputs={name: values[name] for name in self.output_names}, spikes=spikes)

    def _run_stage(self, stage: list[PlannedNode], values: dict, T: int, spikes: dict) -> None:
        key = tuple(id(n) for n in stage)
        compiled = self._stages.get(key)
        if compiled is None:
            compiled = _Stage(stage, values, self.opset, self.device, self.chunk_rows, set(self.initializers),
                              self.padfree)
            params = {n.inputs[k] for n in stage if n.kind == spec.IF_OP
                      for k in (spec.IF_BIAS, spec.IF_THETA_POS, spec.IF_THETA_NEG)}
            if params <= set(self.initializers):      # neurons depend on initializers only: keep them
                self._stages[key] = compiled
        for name in compiled.static:
            if name in self.initializers and name not in self._constants:
                self._constants[name] = _to_torch(self.initializers[name], self.device)
        compiled.run(values, self._constants, T, spikes)
