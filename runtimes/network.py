"""A loaded spiking artifact bound to a backend: input checking, then execution."""

from __future__ import annotations

import importlib.util
import os
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from . import rows, spec
from .errors import ArtifactError, InputError
from .compact import compiled_block_rows
from .loading import load_onnx
from .neuron import live_mask
from .numpy_ref import NumpyRuntime, RunResult, SpikeCounts
from .schedule import if_attributes, if_coding
from .stream import is_delta, stream_runtime

BACKENDS = ("numpy", "snntorch", "onnxruntime")
CHUNK_ROWS = 4096      # at most this many points per chunk of a row-wise run on a CPU: bounded memory
# The Python packages each backend imports (checked lazily) and how to install them.
_REQUIRES = {"numpy": ((), ""), "snntorch": (("torch", "snntorch"), "pip install torch snntorch"),
             "onnxruntime": (("onnxruntime",), "pip install onnxruntime")}


def available_backends() -> tuple[str, ...]:
    """The backends whose packages are installed."""
    return tuple(b for b in BACKENDS if all(importlib.util.find_spec(m) is not None for m in _REQUIRES[b][0]))


def _runtime(backend: str, model: onnx.ModelProto, timesteps: int, options: dict):
    """The runtime object of ``backend``, its module imported only now."""
    if is_delta(model):                        # a stream: its points are its steps (runtimes.stream)
        return stream_runtime(backend, model, options)
    if backend == "numpy":
        return NumpyRuntime(model, timesteps, **options)
    packages, install = _REQUIRES[backend]
    try:
        if backend == "snntorch":
            from .snntorch_backend import SnnTorchRuntime as Runtime
        else:
            from .onnxruntime_backend import OnnxRuntimeRuntime as Runtime
    except ImportError as e:
        raise ArtifactError(f"backend '{backend}' needs {' and '.join(packages)}: {install} "
                            f"({type(e).__name__}: {e})") from None
    return Runtime(model, timesteps, **options)


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def artifact_timesteps(model: onnx.ModelProto, source: str = "model") -> int:
    """T recorded in an artifact's metadata; raises ``ArtifactError`` if it is not an onnx2snn artifact."""
    value = metadata(model).get(spec.META_TIMESTEPS)
    if value is None:
        raise ArtifactError(f"{source}: not an onnx2snn artifact (no '{spec.META_TIMESTEPS}' metadata); "
                            f"convert it first with 'onnx2snn convert'")
    try:
        return int(value)
    except ValueError:
        raise ArtifactError(f"{source}: metadata '{spec.META_TIMESTEPS}' = {value!r} is not an integer") from None


class SpikingNetwork:
    """A converted SNN.  ``run(inputs)`` returns the decoded outputs as a dict by output name."""

    def __init__(self, model: onnx.ModelProto, backend: str = "numpy", timesteps: int | None = None,
                 source: str = "model", **options):
        """``options`` go to the backend's runtime (e.g. ``device="cuda"`` for snntorch)."""
        if backend not in BACKENDS:
            raise ArtifactError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
        self.model, self.backend, self.source = model, backend, source
        self.timesteps = int(timesteps) if timesteps is not None else artifact_timesteps(model, source)
        if self.timesteps <= 0:
            raise ArtifactError(f"timesteps must be a positive integer, got {self.timesteps}")
        self.metadata = metadata(model)
        self._phase = any(node.domain == spec.DOMAIN and node.op_type == spec.IF_OP
                          and if_coding(node) == spec.CODING_PHASE for node in model.graph.node)
        self._check_timesteps(self.timesteps)
        self._runtime = _runtime(backend, model, self.timesteps, options)
        inits = {t.name for t in model.graph.initializer}
        self.inputs = {i.name: i for i in model.graph.input if i.name not in inits}
        self.output_names = [o.name for o in model.graph.output]
        self._row_inputs: list[str] | None = None
        self._block_rows = _block_rows(model, backend, self._runtime)
        self._reference: NumpyRuntime | None = None      # unfused, for per-neuron counts

    def run(self, inputs: dict[str, np.ndarray] | np.ndarray, timesteps: int | None = None,
            chunk_rows: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
        return self.run_with_stats(inputs, timesteps, chunk_rows, progress).outputs

    def run_with_stats(self, inputs: dict[str, np.ndarray] | np.ndarray, timesteps: int | None = None,
                       chunk_rows: int | None = None, progress: Callable[[int, int], None] | None = None,
                       per_neuron: bool = False) -> RunResult:
        """Decoded outputs and spike counts.  A row-wise artifact (``rows.row_inputs``) runs in chunks of
        at most the backend's block of points (``_block_rows``: cache-sized on a CPU, memory-sized on a
        GPU) and at most ``chunk_rows``, so memory stays bounded for any number of points;
        ``progress(done, total)`` is called after each chunk.  ``per_neuron``: each neuron's spikes are
        counted too (``SpikeCounts.per_neuron``), by the unfused numpy reference whatever the backend."""
        if timesteps is not None:
            self._check_timesteps(int(timesteps))
        runtime, extra = self._runtime, {}
        if per_neuron:
            if self._reference is None:
                self._reference = NumpyRuntime(self.model, self.timesteps, fuse=False)
            runtime, extra = self._reference, {"per_neuron": True}
        chunk_rows = self._block_rows if chunk_rows is None else min(chunk_rows, self._block_rows)
        feeds = self.check_inputs(inputs)
        if self._row_inputs is None:       # a delta artifact's stream is cut into blocks by its runtime only
            self._row_inputs = [] if is_delta(self.model) else rows.row_inputs(self.model) or []
        total = feeds[self._row_inputs[0]].shape[0] if self._row_inputs else 0
        if not self._row_inputs or total <= chunk_rows \
                or any(feeds[n].shape[0] != total for n in self._row_inputs):
            result = runtime.run(feeds, timesteps, **extra)
            if progress:
                progress(1, 1)
            return result
        parts: list[RunResult] = []
        pieces = rows.chunks(total, chunk_rows)
        for k, part in enumerate(pieces):
            chunk = {n: a[part] if n in self._row_inputs else a for n, a in feeds.items()}
            parts.append(runtime.run(chunk, timesteps, **extra))
            if progress:
                progress(k + 1, len(pieces))
        return _concatenate(parts)

    def _check_timesteps(self, timesteps: int) -> None:
        if timesteps != 1 and is_delta(self.model):
            raise ArtifactError(f"{self.source}: a delta-coded artifact streams one step per point; T = "
                                f"{timesteps} does not apply")
        if self._phase and timesteps > spec.MAX_PHASE_DIGITS:
            raise ArtifactError(f"{self.source}: a phase-coded artifact sends one binary digit per step; T = "
                                f"{timesteps} is beyond float precision (at most {spec.MAX_PHASE_DIGITS})")

    def check_inputs(self, inputs: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Name, dtype and shape checks against the graph's declared inputs; casts to the declared dtype."""
        if not isinstance(inputs, dict):
            if len(self.inputs) != 1:
                raise InputError(f"the model has inputs {list(self.inputs)}; give a dict by name")
            inputs = {next(iter(self.inputs)): inputs}
        unknown = sorted(set(inputs) - set(self.inputs))
        missing = sorted(set(self.inputs) - set(inputs))
        if unknown or missing:
            raise InputError(f"inputs do not match the model: unknown {unknown}, missing {missing}; "
                             f"the model takes {list(self.inputs)}")
        checked = {}
        for name, value in inputs.items():
            declared = self.inputs[name].type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(declared.elem_type)
            array = np.asarray(value)
            if array.dtype.kind not in "fiu":
                raise InputError(f"input '{name}': dtype {array.dtype} is not numeric")
            array = array.astype(dtype, copy=False)
            dims = [d.dim_value if d.HasField("dim_value") else None for d in declared.shape.dim]
            if declared.HasField("shape") and (len(dims) != array.ndim or any(
                    d is not None and d != s for d, s in zip(dims, array.shape))):
                raise InputError(f"input '{name}': shape {list(array.shape)} does not match the model's "
                                 f"{['?' if d is None else d for d in dims]}")
            if not np.all(np.isfinite(array)):
                raise InputError(f"input '{name}' contains NaN or Inf")
            checked[name] = array
        return checked


def _block_rows(model: onnx.ModelProto, backend: str, runtime) -> int:
    """Points per chunk.  On a CPU, at most ``CHUNK_ROWS`` and few enough to keep the membranes in cache
    for all T steps: ``compiled_block_rows`` of the artifact's live neurons for numpy (``benchmarks/speed.py``
    on poisson1d, 10,000 points, T = 32, one thread, before and after chunking: numpy 5.6x faster per step
    on the default conversion and 1.6x with one neuron per unit, onnxruntime 1.4x on the default
    conversion); numpy runs whose every stage is a compiled chain block their points themselves
    (``chain.Chain.block_rows``), so their chunks only bound memory.  onnxruntime and snnTorch size their
    own (``OnnxRuntimeRuntime.chunk_rows``; ``SnnTorchRuntime.block_rows``: cache-sized on a CPU,
    memory-sized on a GPU)."""
    live, dense = neuron_counts(model)
    if backend == "snntorch":
        return runtime.block_rows(dense)
    if backend == "numpy" and runtime.blocks_itself:
        return CHUNK_ROWS
    if backend == "numpy":
        return min(CHUNK_ROWS, compiled_block_rows(live))
    return min(CHUNK_ROWS, runtime.chunk_rows or CHUNK_ROWS)      # onnxruntime (0: it never chunks itself)


def neuron_counts(model: onnx.ModelProto) -> tuple[int, int]:
    """(live neurons, dense [n, K] slots including θ = inf padding) per point of an artifact, summed over
    its IF nodes whose thresholds are initializers."""
    layers = if_layers(model)
    return sum(layer["neurons"] for layer in layers), sum(layer["units"] * layer["per_unit"] for layer in layers)


def if_layers(model: onnx.ModelProto) -> list[dict]:
    """Each IF node of an artifact whose thresholds are initializers, in graph order: its ``name``,
    ``units`` n, dense slots ``per_unit`` K, ``neurons`` (live ones: θ finite), ``signed``, ``leak`` and
    ``coding``."""
    initializers = {t.name: t for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.domain == spec.DOMAIN and node.op_type == spec.IF_OP:
            thresholds = [initializers.get(node.input[i]) for i in (spec.IF_THETA_POS, spec.IF_THETA_NEG)]
            if None not in thresholds:
                signed, _, leak = if_attributes(node)
                pos, neg = (numpy_helper.to_array(t) for t in thresholds)
                pos2 = pos.reshape(pos.shape[0] if pos.ndim else 1, -1)
                layers.append({"name": node.name, "units": pos2.shape[0], "per_unit": pos2.shape[1],
                               "neurons": int(live_mask(pos, neg, signed).sum()), "signed": signed,
                               "leak": leak, "coding": if_coding(node)})
    return layers


def _concatenate(parts: list[RunResult]) -> RunResult:
    """One result from the results of consecutive row chunks: outputs stacked, spike events added."""
    outputs = {name: np.concatenate([p.outputs[name] for p in parts]) for name in parts[0].outputs}
    spikes = {}
    for name, first in parts[0].spikes.items():
        per_neuron = None if first.per_neuron is None else sum(p.spikes[name].per_neuron for p in parts)
        spikes[name] = SpikeCounts(events=sum(p.spikes[name].events for p in parts), neurons=first.neurons,
                                   batch=sum(p.spikes[name].batch for p in parts), timesteps=first.timesteps,
                                   per_neuron=per_neuron)
    return RunResult(outputs=outputs, spikes=spikes)


def load(path: str | os.PathLike, backend: str = "numpy", timesteps: int | None = None,
         **options) -> SpikingNetwork:
    """Load a spiking artifact written by ``onnx2snn`` and bind it to ``backend`` (``options``: see
    ``SpikingNetwork``)."""
    model = load_onnx(path, ArtifactError)
    return SpikingNetwork(model, backend=backend, timesteps=timesteps, source=str(path), **options)
