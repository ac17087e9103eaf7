"""``onnx2snn inspect``: for an ANN, what would spike, what stays analog and why, and its energy
budget; for an artifact, what it holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtimes.errors import Onnx2SnnError

from .common import EXIT_OK
from .report_text import activation_lines


def inspect_command(args) -> int:
    from runtimes import spec
    from runtimes.loading import load_onnx
    from ..errors import ModelError
    from ..gates import gates_differ
    from ..importer import import_model
    from ..structure import analyse
    model = load_onnx(Path(args.model), ModelError)
    if any(node.domain == spec.DOMAIN for node in model.graph.node):
        return _inspect_artifact(args.model, model)
    imported = import_model(args.model)
    structure = analyse(imported.model)
    budget = _budget_lines(imported, structure)        # runs the ANN: done before anything is printed
    print(f"{imported.path}: inputs {imported.input_shapes}, dtype {imported.dtype}")
    for name in imported.batched_inputs:
        print(f"  input '{name}' is rank 1: a batch axis is added")
    print(f"{len(structure.layers)} spiking layer(s) (affine layer -> activation -> spiking neurons):")
    for layer in structure.layers:
        feeds = ", ".join(c.name for c in layer.consumers)
        source = f"{layer.affine.input} (analog node's output, encoded directly)" if layer.identity else \
            f"{layer.affine.name} [{layer.affine.fan_in} -> {layer.width}]"
        via = "" if layer.link is None or layer.link.identity else \
            f" (input through {'+'.join(n.op_type for n in layer.link.nodes)} of spiking layers " \
            f"{', '.join(structure.layers[k].name for k in layer.link.sources)})"
        print(f"  {source}{via} -> {layer.activation.kind} ('{layer.name}') -> feeds {feeds}")
    print(f"{len(structure.readouts)} readout(s) (analog readout of decoded spikes):")
    for readout in structure.readouts:
        print(f"  {readout.name} [{readout.fan_in} -> {readout.width}]")
    print(f"{len(structure.analog)} node(s) stay analog:")
    for node in structure.analog:
        print(f"  {node.name} ({node.op}): {node.reason}")
    for line in activation_lines(structure.activations()):
        print(line)
    if gates_differ(imported.model):
        spiking = analyse(imported.model, static_gates=False).activations()
        print(f"with --gates spiking: {sum(a['spikes'] for a in spiking)} of {len(spiking)} activations spike (the "
              f"gates too, decoded before their products); convert's default --gates auto converts both and keeps "
              f"the one that meets the accuracy at less energy")
    for line in budget:
        print(line)
    return EXIT_OK


def _inspect_artifact(path: str, model) -> int:
    """What a spiking artifact holds: its metadata (T, encoding, readout, neuron, domain, source), inputs and
    outputs, and each IF layer's units, neurons and neuron model."""
    from runtimes import spec
    from runtimes.network import artifact_timesteps, if_layers, metadata
    meta = metadata(model)
    timesteps = artifact_timesteps(model, path)
    layers = if_layers(model)
    decodes = sum(1 for node in model.graph.node if node.domain == spec.DOMAIN and node.op_type == spec.DECODE_OP)
    standard = sum(1 for node in model.graph.node if node.domain != spec.DOMAIN)
    inputs = {i.name: [d.dim_value or d.dim_param or "?" for d in i.type.tensor_type.shape.dim]
              for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}}
    print(f"{path}: onnx2snn spiking artifact (format {meta.get(spec.META_FORMAT, '?')}), T={timesteps}, "
          f"coding {'+'.join(sorted({l['coding'] for l in layers})) or 'none'} "
          f"({meta.get(spec.META_ENCODING, '?')} encoding), readout {meta.get(spec.META_READOUT, '?')}, "
          f"neuron {meta.get(spec.META_NEURON, '?')}")
    print(f"domain: {meta.get(spec.META_DOMAIN, 'not recorded')}; converted from {meta.get(spec.META_SOURCE, '?')}")
    print(f"inputs {inputs}; outputs {[o.name for o in model.graph.output]}")
    print(f"{len(layers)} spiking layer(s), {sum(layer['neurons'] for layer in layers)} neurons:")
    for layer in layers:
        kind = "signed" if layer["signed"] else "unsigned"
        leak = f", leak {layer['leak']:g}" if layer["leak"] != 1.0 else ""
        print(f"  {layer['name']}: {layer['units']} units x {layer['per_unit']} slot(s) -> {layer['neurons']} "
              f"{kind} IF neurons{leak}")
    print(f"{decodes} Decode node(s), {standard} standard ONNX node(s) (affine layers, decoding, analog ops)")
    return EXIT_OK


def _budget_lines(imported, structure) -> list[str]:
    """The ANN's cost per sample and the SNN's break-even spike budget (needs the model's domain)."""
    from ..energy import ann_budget, load_tables
    from ..errors import DomainError
    from ..inputs import resolve_domain, validation_inputs
    from ..report import tensor_shapes
    try:
        box = resolve_domain(imported, None)
    except DomainError:
        return ["energy: give the model an 'onnx2snn.domain' to see the ANN's cost per sample"]
    try:
        shapes, rows = tensor_shapes(imported, validation_inputs(imported, box, 64, np.random.default_rng(0)))
    except Onnx2SnnError as e:
        return [f"energy: not measured, the ANN does not run: {e}"]
    budget = ann_budget(imported.model, structure, shapes, rows, load_tables())
    w = budget["work"]
    lines = [f"ANN per sample: {w.macs:.0f} MACs, {w.activations:.0f} activations, {w.adds:.0f} adds, "
             f"{w.mults:.0f} mults; {100 * budget['spiking_mac_fraction']:.1f}% of its MACs become synaptic "
             f"operations when converted",
             "energy per sample, compute only, and the SNN's break-even (spikes per hidden neuron per inference "
             "before its synaptic operations alone cost as much):"]
    for name, pj in budget["energy_pj"].items():
        even = budget["break_even_spikes_per_neuron"][name]
        lines.append(f"  {name:<10} ANN {pj / 1e3:8.2f} nJ   break-even {even:.2f} spikes per neuron")
    return lines
