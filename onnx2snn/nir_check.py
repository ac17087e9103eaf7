"""Checks a NIR export (``nir_export``) by running it in ``runtimes.nir_executor`` against the artifact's
numpy run (``runtimes.numpy_ref``) on the same points.

exact form, spike for spike: the artifact is stepped by the numpy reference runtime itself — a copy whose
IF membranes are graph inputs and whose spikes and membranes are outputs (through a Decode, the identity at
T = 1), run for one step at a time with the membranes fed back — and every channel c of every layer at
every step is compared with the artifact's spike: y_c(t) = 1 ⇔ σ_c·s_{j_c}(t) > 0.  ``dtype`` float64 runs
the artifact with its parameters cast to float64, the precision the export is written in; float32 runs it
as shipped (a float32 artifact), whose own rounding flips the spikes of membranes within float32 rounding
of a threshold.  The decoded outputs are compared with that stepped run's (the mean of its per-step
outputs: bit for bit the unfused reference's ordinary run) and with the artifact's ordinary run in its
own dtype.

ON/OFF form: decoded outputs against the artifact's ordinary run, relative L2 over all outputs, under NIR's
IF reset (v = v_reset = 0) and under the subtractive reset some consumers apply (``NirExecutor``).

ON/OFF form through sinabs (``runtimes.nir_sinabs``): the export written to a file, run by sinabs as
``from_nir`` imports it (MultiSpike) and with one spike per step (SingleSpike), against the artifact's run
and against ``NirExecutor`` on the same file under the three IF readings; the per-layer spike counts of
the single-spike run against the executor's sinabs reading (the same dynamics, in float64 instead of
sinabs's float32 affine maps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtimes import spec
from runtimes.errors import ArtifactError
from runtimes.network import SpikingNetwork
from runtimes.nir_executor import NirExecutor
from runtimes.numpy_ref import NumpyRuntime

from .domain import parse_domain, sample_domain
from .nir_export import NirExport, write_nir
from .report import flatten_outputs, relative_l2

MEMBRANE_IN, SPIKES_OUT, MEMBRANE_OUT = "{}/nir_check/membrane_in", "{}/nir_check/spikes", "{}/nir_check/membrane"


@dataclass
class ExactCheck:
    """``events``: the artifact's spikes (non-zero events) over all layers, points and steps, run in
    ``dtype``; ``mismatches``: channel-steps where the export and the artifact differ (per layer in
    ``per_layer``); ``rel_l2`` / ``max_abs``: decoded outputs of the export against that run's;
    ``rel_l2_shipped``: against the artifact's ordinary run in its own dtype (float32 for a float32 one);
    ``rel_l2_precision``: the artifact's ordinary run in ``dtype`` against that one (its own rounding)."""

    dtype: str
    points: int
    timesteps: int
    events: int
    mismatches: int
    rel_l2: float
    max_abs: float
    rel_l2_shipped: float
    rel_l2_precision: float
    per_layer: dict[str, int] = field(default_factory=dict)


@dataclass
class OnOffCheck:
    """Relative L2 (and max abs) of the ON/OFF export's decoded outputs against the artifact's run, under
    NIR's reset to v_reset (``rel_l2``) and under a subtractive reset (``rel_l2_subtract``)."""

    points: int
    timesteps: int
    rel_l2: float
    max_abs: float
    rel_l2_subtract: float
    max_abs_subtract: float
    spikes_per_point: float


@dataclass
class SinabsCheck:
    """Relative L2 of sinabs's decoded outputs: ``rel_l2`` (one spike per step) and ``rel_l2_multi`` (as
    ``from_nir`` imports IF) against the artifact's run; ``vs_executor`` the single-spike run against
    ``NirExecutor`` per IF reading ("sinabs", "subtract", "value"), ``executor_rel_l2`` that reading
    against the artifact's run; ``spike_mismatches`` the summed |difference| of the per-layer spike
    counts against the executor's sinabs reading, of ``spikes`` (the single-spike run's events)."""

    points: int
    timesteps: int
    rel_l2: float
    max_abs: float
    rel_l2_multi: float
    vs_executor: dict[str, float]
    executor_rel_l2: dict[str, float]
    spikes: int
    spike_mismatches: int


def domain_points(model: onnx.ModelProto, count: int, seed: int = 0, source: str = "artifact") -> dict[str, np.ndarray]:
    """``count`` points drawn uniformly from the artifact's domain (metadata ``onnx2snn.domain``)."""
    meta = {p.key: p.value for p in model.metadata_props}
    text = meta.get(spec.META_DOMAIN)
    if not text:
        raise ArtifactError(f"{source}: no '{spec.META_DOMAIN}' metadata; give the points to check the export on")
    inits = {t.name for t in model.graph.initializer}
    shapes, dtype = {}, np.float32
    for value in model.graph.input:
        if value.name not in inits:
            shapes[value.name] = [d.dim_value or None for d in value.type.tensor_type.shape.dim]
            dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return sample_domain(parse_domain(text), shapes, count, np.random.default_rng(seed), dtype)


def check_exact(export: NirExport, model: onnx.ModelProto, inputs: dict[str, np.ndarray],
                dtype=np.float64) -> ExactCheck:
    """Step the exact export and the artifact side by side (module docstring)."""
    reference = _reference(model, inputs, export.timesteps)
    stepper = ArtifactStepper(model, dtype)
    executor = NirExecutor(export.graph, dtype=np.float64)
    nir_inputs = {export.inputs[name]: value for name, value in inputs.items()}
    per_layer = {layer.artifact_node: 0 for layer in export.layers}
    events, sums, stepped = 0, {}, {}
    for _ in range(export.timesteps):
        spikes = stepper.step(inputs)
        out = executor.step(nir_inputs)
        for name, value in stepper.outputs.items():
            stepped[name] = value if name not in stepped else stepped[name] + value
        for layer in export.layers:
            s = spikes[layer.artifact_node]
            events += int(np.count_nonzero(s))
            expected = layer.signs * s[:, layer.neurons] > 0
            per_layer[layer.artifact_node] += int(np.count_nonzero(expected != (out[layer.node] > 0)))
        for name, node in export.outputs.items():
            sums[name] = out[node] if name not in sums else sums[name] + out[node]
    decoded = {name: total / export.timesteps for name, total in sums.items()}
    own = {name: total / np.asarray(export.timesteps, total.dtype) for name, total in stepped.items()}
    rel, worst = _compare(decoded, own)
    recast = _reference(cast_artifact(model, dtype), {k: np.asarray(v, dtype) for k, v in inputs.items()},
                        export.timesteps)
    return ExactCheck(np.dtype(dtype).name, _points(inputs), export.timesteps, events, sum(per_layer.values()),
                      rel, worst, _compare(decoded, reference)[0], _compare(recast, reference)[0], per_layer)


def check_onoff(export: NirExport, model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> OnOffCheck:
    """Run the ON/OFF export under both resets against the artifact's ordinary run."""
    reference = _reference(model, inputs, export.timesteps)
    nir_inputs = {export.inputs[name]: value for name, value in inputs.items()}
    results = {}
    for reset in ("value", "subtract"):
        run = NirExecutor(export.graph, if_reset=reset).run(nir_inputs, export.timesteps)
        decoded = {name: run.outputs[node] for name, node in export.outputs.items()}
        results[reset] = _compare(decoded, reference) + (sum(run.spikes.values()),)
    points = _points(inputs)
    return OnOffCheck(points, export.timesteps, *results["value"][:2], *results["subtract"][:2],
                      results["value"][2] / max(points, 1))


def check_sinabs(export: NirExport, model: onnx.ModelProto, inputs: dict[str, np.ndarray],
                 python: str | None = None) -> SinabsCheck:
    """Run the ON/OFF ``export`` through sinabs (in this interpreter, or in ``python``'s environment) and
    in ``NirExecutor`` from the same file (module docstring)."""
    import tempfile

    import nir
    from runtimes.nir_sinabs import run_sinabs

    if export.form != "onoff":
        raise ArtifactError(f"sinabs imports the ON/OFF form only (IF and Affine nodes), not the {export.form} form")
    if len(export.inputs) != 1:
        raise ArtifactError(f"sinabs (nirtorch 2.0) runs graphs with one input; this export has {len(export.inputs)}")
    (name, x), = inputs.items()
    reference = _reference(model, inputs, export.timesteps)
    with tempfile.TemporaryDirectory() as folder:
        path = write_nir(export, f"{folder}/onoff.nir")
        runs = {spike: run_sinabs(path, x, export.timesteps, spike, python) for spike in ("single", "multi")}
        graph = nir.read(path)
    decoded = {spike: {n: run[node] for n, node in export.outputs.items()} for spike, run in runs.items()}
    vs_executor, executor, counts = {}, {}, {}
    for reset in ("sinabs", "subtract", "value"):
        run = NirExecutor(graph, if_reset=reset).run({export.inputs[name]: x}, export.timesteps)
        ours = {n: run.outputs[node] for n, node in export.outputs.items()}
        vs_executor[reset], executor[reset] = _compare(decoded["single"], ours)[0], _compare(ours, reference)[0]
        counts[reset] = run.spikes
    theirs = {node: int(runs["single"][f"spikes:{node}"]) for node in counts["sinabs"]}
    return SinabsCheck(_points(inputs), export.timesteps, *_compare(decoded["single"], reference),
                       _compare(decoded["multi"], reference)[0], vs_executor, executor, sum(theirs.values()),
                       sum(abs(theirs[node] - counts["sinabs"][node]) for node in theirs))


class ArtifactStepper:
    """The artifact run by the numpy reference runtime one step at a time (module docstring): ``step``
    returns each IF node's spikes of this step, [batch, n·K]; ``outputs`` holds the graph outputs' values of
    the step (before the average over T)."""

    def __init__(self, model: onnx.ModelProto, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.model, self.layers = stepping_model(model, self.dtype)
        self.runtime = NumpyRuntime(self.model, 1, fuse=False)
        self.membranes: dict[str, np.ndarray] | None = None
        self.output_names = [o.name for o in model.graph.output]
        self.outputs: dict[str, np.ndarray] = {}      # the artifact's outputs of the last step (undecoded)

    def step(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = _points(inputs)
        if self.membranes is None:
            self.membranes = {name: np.broadcast_to(v0, (batch,) + v0.shape).astype(self.dtype)
                              for name, v0 in self.layers.items()}
        feed = {name: np.asarray(value, self.dtype) for name, value in inputs.items()}
        feed.update({MEMBRANE_IN.format(name): v for name, v in self.membranes.items()})
        out = self.runtime.run(feed).outputs
        self.membranes = {name: out[MEMBRANE_OUT.format(name)] for name in self.layers}
        self.outputs = {name: out[name] for name in self.output_names}
        return {name: out[SPIKES_OUT.format(name)].reshape(batch, -1) for name in self.layers}


def stepping_model(model: onnx.ModelProto, dtype) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``model`` in ``dtype`` whose IF membranes are inputs and whose spikes and membranes are
    outputs (each through a Decode: the identity when run for one step); returns it and each IF node's
    initial potential v0 [n, K]."""
    stepped = cast_artifact(model, dtype)
    graph = stepped.graph
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    layers = {}
    for node in list(graph.node):
        if node.domain != spec.DOMAIN or node.op_type != spec.IF_OP:
            continue
        name = node.name or node.output[0]
        v0 = inits.get(node.input[spec.IF_MEMBRANE])
        if v0 is None:
            raise ArtifactError(f"node '{name}': its initial potential is not an initializer")
        layers[name] = v0
        node.input[spec.IF_MEMBRANE] = MEMBRANE_IN.format(name)
        graph.input.append(helper.make_tensor_value_info(MEMBRANE_IN.format(name), elem, None))
        if len(node.output) < 2:
            node.output.append(f"{name}/nir_check/membrane_step")
        elif not node.output[spec.IF_MEMBRANE_OUT]:
            node.output[spec.IF_MEMBRANE_OUT] = f"{name}/nir_check/membrane_step"
        for tensor, out in ((node.output[spec.IF_SPIKES], SPIKES_OUT), (node.output[spec.IF_MEMBRANE_OUT], MEMBRANE_OUT)):
            graph.node.append(helper.make_node(spec.DECODE_OP, [tensor], [out.format(name)], domain=spec.DOMAIN,
                                               name=out.format(name) + "/decode"))
            graph.output.append(helper.make_tensor_value_info(out.format(name), elem, None))
    return stepped, layers


def cast_artifact(model: onnx.ModelProto, dtype) -> onnx.ModelProto:
    """A copy of ``model`` whose float initializers, inputs and outputs are in ``dtype``."""
    cast = onnx.ModelProto()
    cast.CopyFrom(model)
    graph = cast.graph
    del graph.value_info[:]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    for k, tensor in enumerate(graph.initializer):
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind == "f" and array.dtype != dtype:
            graph.initializer[k].CopyFrom(numpy_helper.from_array(array.astype(dtype), tensor.name))
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            value.type.tensor_type.elem_type = elem
    return cast


def _reference(model: onnx.ModelProto, inputs: dict[str, np.ndarray], timesteps: int) -> dict[str, np.ndarray]:
    return SpikingNetwork(model, timesteps=timesteps).run(inputs)


def _compare(decoded: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> tuple[float, float]:
    names = list(reference)
    got = flatten_outputs({n: np.asarray(decoded[n]).reshape(np.shape(reference[n])) for n in names}, names)
    want = flatten_outputs(reference, names)
    return relative_l2(got, want), float(np.max(np.abs(got - want))) if want.size else 0.0


def _points(inputs: dict[str, np.ndarray]) -> int:
    return int(np.shape(next(iter(inputs.values())))[0])
