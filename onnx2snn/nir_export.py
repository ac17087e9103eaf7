"""NIR export of an onnx2snn artifact, in an exact and a lossy ON/OFF form.

NIR (the ``nir`` package) has no node for the artifact's neuron (``runtimes.spec``: signed, amplitude-valued
spikes, reset by subtraction, fire on ``u >= a·θ``, an initial potential v0).  Both forms below are
written for the discrete-time semantics of ``runtimes.nir_executor``: dt = 1 step, a node's input is the
sum of its incoming edges, a back edge carries the previous step's value (zero at t = 1), the graph input
is the same at every step (direct encoding), and the decoded output is the mean over the T steps of each
Output node (the artifact's Decode).

The artifact is first read as spiking layers joined by affine maps (``artifact_layers``): per layer its
M live neurons j with current I_j(t) = c_j + Σ_s src_s(t)·M_s[:, j].  A neuron gets one *channel* per
spike sign it can fire: + when θ+_j is finite, - when the layer is signed and θ-_j finite (C channels,
the + channels first); channel c of neuron j_c has sign σ_c and amplitude amp_c = +θ+_j or -θ-_j.

**exact** (default).  Per layer ``L``::

    L_synapses_k  Affine       the current from source k: a graph input, or another layer's C channels
                               with the amplitudes folded in (W[:, c] = amp_c·M_s[j_c, :]); the constant c
                               is the bias of the first
    L_integrator  I(r = 1)     x_j(t) = x_j(t-1) + I_j(t) + reset_j(t-1),  x_j(0) = 0
    L_split       Linear(P)    P [C, M]: σ_c at (c, j_c)          — Linear([I; -I]) on the live neurons
    L_threshold   Threshold(ϑ) ϑ_c = the float below a·θ+_j - v0_j (σ = +1), a·θ-_j + v0_j (σ = -1)
    L_reset       Linear(R)    R [M, C]: -amp_c at (j_c, c), on the back edge L_reset → L_integrator

With the reset one step late, x_j(t) = Σ_{τ<=t} I_j(τ) - Σ_{τ<t} s_j(τ) = u_j(t) - v0_j, where u is the
artifact's membrane after integration (u = v(t-1) + (z + β), v = u - s): the initial potential moves into
the thresholds, and x > ϑ ⇔ u >= a·θ+ (+) or -u >= a·θ- (-) — the artifact's spike, at most one channel
per neuron.  Each readout is an Affine from the channels into an Output node.  The parameters are float64
(folded from the artifact's float32 values; a·θ ∓ v0 is exact there), so in float64 the form reproduces
the artifact's spikes; a consumer rounding to float32 flips the spikes whose membrane lies within float32
rounding of a threshold (the artifact's own float32 and float64 runs differ the same way).

**onoff**.  Per layer one ``nir.IF`` node of C unsigned neurons (the ON population of the + channels,
the OFF population of the - channels), fed by ``Affine([W; -W])``: channel c integrates σ_c·I_j plus
((1 - a)·θ_σ + σ_c·v0_j)/T per step — the charge the artifact's neuron starts with relative to a neuron
firing at θ and reset to 0, spread over the T steps — and fires at v > θ_σ (θ+ for ON, θ- for OFF),
r = 1, v_reset = 0 (nir 1.0.8's default, left out of the file: nir 1.0.4, which sinabs pins, has no
v_reset — its IF is defined with a subtractive reset — and reads an IF only without one).
Lossy: the two populations do not cancel as one signed membrane does, and a reset to 0 drops the charge
above θ (consumers that subtract θ instead keep it); ``nir_check`` measures the error against the artifact.

Graph metadata records the form, the neuron semantics, T, coding, encoding, readout and domain
(informative: nothing reads it back); each threshold or IF node records its artifact IF node and the flat
(unit, slot) neuron index and sign of each channel.  What NIR cannot carry is refused (``artifact_layers``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifact_layers import Form, SpikingLayer, SpikingLayers, spiking_layers
from .errors import ModelError

FORMS = ("exact", "onoff")
SEMANTICS = {
    "exact": "discrete time, dt = 1; a node's input is the sum of its incoming edges; the back edge "
             "L_reset -> L_integrator carries the previous step's value (0 at t = 1); I: x(t) = x(t-1) + input; "
             "Threshold: 1 where input > threshold; graph inputs are the same every step; decoded output = "
             "mean over T steps of each Output node",
    "onoff": "discrete time, dt = 1; a node's input is the sum of its incoming edges; IF: v(t) = v(t-1) + input, "
             "spike where v > v_threshold, then v = 0 (v_reset); graph inputs are the same every step; decoded "
             "output = mean over T steps of each Output node",
}


@dataclass
class ExportedLayer:
    """Where an artifact IF node went: ``node`` the NIR node whose output is its spikes (the Threshold,
    or the IF of the ON/OFF form), ``neurons`` and ``signs`` [C] the flat (unit, slot) index and sign of
    each channel, ``amplitudes`` [C] the artifact's spike value of each."""

    artifact_node: str
    node: str
    neurons: np.ndarray
    signs: np.ndarray
    amplitudes: np.ndarray


@dataclass
class NirExport:
    """A NIR graph of an artifact: ``inputs`` / ``outputs`` map the artifact's names to the NIR Input /
    Output node names; ``layers`` one ``ExportedLayer`` per IF node."""

    graph: object                      # nir.NIRGraph
    form: str
    timesteps: int
    inputs: dict[str, str]
    outputs: dict[str, str]
    layers: list[ExportedLayer] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return sum(len(layer.neurons) for layer in self.layers)


def export_nir(artifact, form: str = "exact", source: str = "artifact") -> NirExport:
    """The NIR graph of ``artifact`` (an ``onnx.ModelProto``, or the path of a spiking artifact) in
    ``form`` ("exact" or "onoff"); raises ``ModelError`` naming the node NIR cannot carry."""
    try:
        import nir
    except ImportError:
        raise ModelError("NIR export needs the nir package: pip install nir") from None
    if form not in FORMS:
        raise ModelError(f"unknown NIR form {form!r}; use {' or '.join(FORMS)}")
    if isinstance(artifact, (str, os.PathLike)):
        from runtimes.loading import load_onnx
        source, artifact = str(artifact), load_onnx(artifact, ModelError)
    layers = spiking_layers(artifact, source)
    names = _Names()
    nodes, edges = {}, []
    inputs = {name: names.take(name) for name in layers.inputs}
    for name, width in layers.inputs.items():
        nodes[inputs[name]] = nir.Input(input_type={"input": np.array([width])})
    exported: dict[str, ExportedLayer] = {}
    for k, layer in enumerate(layers.layers, start=1):
        prefix = names.take(f"layer{k}")
        channels = _channels(layer)
        target = f"{prefix}_integrator" if form == "exact" else f"{prefix}_neurons"
        current = layer.current if form == "exact" else _onoff_current(layer, channels, layers.timesteps)
        _synapses(nir, current, f"{prefix}_synapses", target, inputs, exported, nodes, edges)
        spikes = _exact_layer(nir, layer, channels, prefix, nodes, edges) if form == "exact" \
            else _onoff_layer(nir, layer, channels, target, nodes)
        exported[layer.name] = ExportedLayer(layer.name, spikes, layer.neurons[channels[0]], channels[1],
                                             channels[2])
        nodes[spikes].metadata = {"onnx2snn.if_node": layer.name, "onnx2snn.neurons": exported[layer.name].neurons,
                                  "onnx2snn.signs": channels[1]}
    outputs = {}
    for name, readout in layers.readouts.items():
        outputs[name] = names.take(name)
        nodes[outputs[name]] = nir.Output(output_type={"output": np.array([readout.features[0]])})
        _synapses(nir, readout, f"{outputs[name]}_readout", outputs[name], inputs, exported, nodes, edges)
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=_metadata(layers, form))
    return NirExport(graph, form, layers.timesteps, inputs, outputs, list(exported.values()))


def write_nir(export: NirExport, path: str | os.PathLike) -> Path:
    """Write ``export`` to ``path`` (HDF5, ``nir.write``), atomically; an all-zero ``v_reset`` is left
    out of each IF node (``nir.read`` restores it; nir 1.0.4 cannot read it)."""
    import h5py
    import nir
    from .saving import atomic_write

    def write(tmp: Path) -> None:
        nir.write(tmp, export.graph)
        with h5py.File(tmp, "r+") as f:
            for group in f["node"]["nodes"].values():
                if group["type"][()] == b"IF" and "v_reset" in group and not np.any(group["v_reset"][()]):
                    del group["v_reset"]
    return atomic_write(Path(path), write)


def _channels(layer: SpikingLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neuron position j_c in the layer, sign σ_c, amplitude amp_c) of each channel, + channels first."""
    pos = np.flatnonzero(np.isfinite(layer.theta_pos))
    neg = np.flatnonzero(np.isfinite(layer.theta_neg)) if layer.signed else np.zeros(0, np.int64)
    index = np.concatenate([pos, neg])
    signs = np.concatenate([np.ones(len(pos), np.int64), -np.ones(len(neg), np.int64)])
    amplitudes = np.concatenate([layer.theta_pos[pos], -layer.theta_neg[neg]])
    return index, signs, amplitudes


def _synapses(nir, form: Form, prefix: str, target: str, inputs: dict[str, str],
              exported: dict[str, ExportedLayer], nodes: dict, edges: list) -> None:
    """One Affine per source of ``form`` into ``target`` (features [d]): weight [d, width of the source];
    the constant is the first one's bias."""
    bias = form.const
    terms = [(s, m) for s, m in form.terms.items() if np.any(m)] or list(form.terms.items())[:1]
    for k, (source, m) in enumerate(terms):
        if source in inputs:
            weight, start = m.T, inputs[source]
        else:
            layer = exported[source]
            weight, start = (layer.amplitudes[:, None] * m[layer.neurons]).T, layer.node
        name = prefix if len(terms) == 1 else f"{prefix}_{k}"
        nodes[name] = nir.Affine(weight=np.ascontiguousarray(weight), bias=bias if k == 0 else np.zeros_like(bias))
        edges += [(start, name), (name, target)]


def _exact_layer(nir, layer: SpikingLayer, channels, prefix: str, nodes: dict, edges: list) -> str:
    index, signs, amplitudes = channels
    a = layer.fire_fraction
    split = np.zeros((len(index), layer.size))
    split[np.arange(len(index)), index] = signs
    bound = np.where(signs > 0, a * layer.theta_pos[index] - layer.v0[index],
                     a * layer.theta_neg[index] + layer.v0[index])
    reset = np.zeros((layer.size, len(index)))
    reset[index, np.arange(len(index))] = -amplitudes
    integrator, threshold = f"{prefix}_integrator", f"{prefix}_threshold"
    nodes[integrator] = nir.I(r=np.ones(layer.size))
    nodes[f"{prefix}_split"] = nir.Linear(weight=split)
    nodes[threshold] = nir.Threshold(threshold=np.nextafter(bound, -np.inf))
    nodes[f"{prefix}_reset"] = nir.Linear(weight=reset)
    edges += [(integrator, f"{prefix}_split"), (f"{prefix}_split", threshold), (threshold, f"{prefix}_reset"),
              (f"{prefix}_reset", integrator)]
    return threshold


def _onoff_current(layer: SpikingLayer, channels, timesteps: int) -> Form:
    """σ_c·I_j + ((1 - a)·θ_σ + σ_c·v0_j)/T per channel (module docstring)."""
    index, signs, amplitudes = channels
    start = (1 - layer.fire_fraction) * np.abs(amplitudes) + signs * layer.v0[index]
    current = layer.current.map(lambda m: m[..., index] * signs)
    return current.plus(start / timesteps)


def _onoff_layer(nir, layer: SpikingLayer, channels, node: str, nodes: dict) -> str:
    amplitudes = channels[2]
    nodes[node] = nir.IF(r=np.ones(len(amplitudes)), v_threshold=np.abs(amplitudes))     # v_reset: 0 by default
    return node


def _metadata(layers: SpikingLayers, form: str) -> dict:
    meta = layers.metadata
    return {"onnx2snn.form": form, "onnx2snn.semantics": SEMANTICS[form],
            "onnx2snn.timesteps": int(layers.timesteps), "onnx2snn.coding": "rate",
            "onnx2snn.encoding": meta.get("onnx2snn.encoding", "direct"),
            "onnx2snn.readout": meta.get("onnx2snn.readout", "analog"),
            "onnx2snn.neuron": meta.get("onnx2snn.neuron", "round"),
            "onnx2snn.domain": meta.get("onnx2snn.domain", ""),
            "onnx2snn.source": meta.get("onnx2snn.source", "")}


class _Names:
    """NIR node names: the artifact's names with characters other than letters, digits and _ replaced
    (HDF5 reads '/' as a group, nirtorch '.' as an attribute), made unique."""

    def __init__(self):
        self.used: set[str] = set()

    def take(self, name: str) -> str:
        base = re.sub(r"\W", "_", name) or "node"
        if base[0].isdigit():
            base = f"n{base}"
        candidate, k = base, 1
        while candidate in self.used:
            k += 1
            candidate = f"{base}_{k}"
        self.used.add(candidate)
        return candidate
