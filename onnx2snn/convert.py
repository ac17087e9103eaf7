"""``onnx2snn.convert``: import, calibrate, rewrite, validate — the whole job as one call."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from runtimes import spec
from runtimes.network import SpikingNetwork

from .ann import ann_session, run_ann
from .calibration import Calibration, ConversionOptions, calibrate
from .calibration.grid_error import grid_error
from .calibration.options import promised_error
from .calibration.tail import output_tail
from .domain import Domain, format_domain
from .errors import ModelError
from .gates import VARIANTS, choose_gates, gates_differ, gates_report, measure_variants
from .importer import ImportedModel, import_model
from .inputs import calibration_inputs, is_grid_model, resolve_domain, validation_inputs
from .progress import Progress, silent
from .report import build_report, finish_timing
from .resources import check_calibration_memory
from .rewrite import build_artifact
from .oscillation import oscillating_static_layers
from .saving import save_model
from .sine_range import reduce_sines, reducible_sines
from .structure import Structure, analyse

VALIDATION_POINTS = 2048


@dataclass
class ConversionResult:
    """The artifact (``model``), what was converted (``structure``) and the measured ``report`` (dict)."""

    model: onnx.ModelProto
    structure: Structure
    calibration: Calibration
    domain: Domain
    options: ConversionOptions
    report: dict = field(default_factory=dict)
    source: Path | None = None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the artifact atomically; refuses to overwrite the source model."""
        return save_model(self.model, path, source=self.source)

    def network(self, backend: str = "numpy") -> SpikingNetwork:
        return SpikingNetwork(self.model, backend=backend, source="converted model")


def convert(model: str | os.PathLike, domain: Domain | str | None = None, timesteps: int = 32,
            calib: dict[str, np.ndarray] | np.ndarray | str | None = None, samples: int = 4096, seed: int = 0,
            pieces: int | str = "auto", calibration: str | tuple[str, ...] | None = None,
            threshold: str = "max", neuron: str = "round", readout: str = "analog",
            validation_points: int = VALIDATION_POINTS, validate: bool = True,
            progress: Progress | None = None, energy_table: str | None = None,
            warm_start: Calibration | None = None, target_error: float | None = None, graded: bool = False,
            **extra) -> ConversionResult:
    """Convert the ONNX model at ``model`` to an SNN.

    ``domain``: {input: [(lo, hi) per feature]} or the text form (default: the model's metadata);
    ``calib``: calibration inputs (array, dict by input name, or a .npy/.npz path), else ``samples``
    uniform domain points; further options (``v0``, ``shift``, ``readout_enlargement``, ``tolerance``,
    ``finetune_iterations``, ``first_layer``, ``rest``, ``spike_penalty``) and their meaning:
    ``ConversionOptions``; ``energy_table``: a JSON file of further cost tables for the report.
    ``progress``, if given, receives a line per stage and the steps of long ones (``onnx2snn.progress``;
    the library never prints).  ``warm_start``: a calibration of the same model to start finetune from
    (``calibration.pipeline.calibrate``).  ``coding="delta"``: a streaming artifact (``onnx2snn.delta``) whose
    event sizes meet ``target_error`` (default ``delta.convert.DEFAULT_TARGET_ERROR``) on ordered points;
    ``graded``: one graded event per sending unit.  ``gates="auto"`` (``--pieces auto``, rate code): static
    gates computed once or spiking, whichever meets the accuracy at less energy (``gates.py``).
    """
    arguments = {k: v for k, v in locals().items() if k != "extra"} | extra
    options = ConversionOptions(timesteps=timesteps, pieces=pieces, calibration=calibration,
                                threshold=threshold, neuron=neuron, readout=readout, seed=seed, **extra)
    say = progress or silent
    started = time.perf_counter()
    say(f"importing {model}")
    imported = import_model(model)
    box = resolve_domain(imported, domain)
    if options.gates == "auto" and options.pieces == "auto" and options.coding == spec.CODING_RATE and \
            options.links and gates_differ(imported.model):
        return _convert_choosing_gates(arguments, imported, box, options, say, started)
    def structure_of(graph: onnx.ModelProto, analog_first) -> Structure:
        return analyse(graph, analog_first=analog_first, links=options.links, static_gates=options.gates != "spiking")

    structure = structure_of(imported.model, options.first_layer == "analog")
    if not structure.layers:
        raise ModelError(f"{imported.path}: no affine layer followed by a pointwise activation and another "
                         f"affine layer; nothing to convert (see 'onnx2snn inspect')")
    if options.coding == spec.CODING_DELTA:       # streaming sigma-delta neurons: their own conversion
        from .delta.convert import convert_delta
        return convert_delta(imported, box, structure, options, target_error, calib, samples, seed,
                             validation_points, validate, say, energy_table, started, graded)
    say(f"{len(structure.layers)} spiking layer(s), {len(structure.analog)} analog node(s); running the ANN "
        f"on calibration points")
    feeds = calibration_inputs(imported, box, calib, samples, np.random.default_rng(seed))
    grid_model = is_grid_model(imported)

    def ann_values(structure: Structure) -> dict[str, np.ndarray]:
        """The calibration inputs and every ANN tensor the structure's calibration reads."""
        needed = [t for t in _tensors_needed(structure) if t not in feeds]
        return {**feeds, **run_ann(structure.model, feeds, needed, source=imported.path,
                                   graph_outputs=not grid_model)}      # a grid of 4096^d points is never needed

    ann = ann_values(structure)
    oscillating = oscillating_static_layers(structure, ann) if options.links and options.first_layer == "spiking" \
        else {}
    if oscillating:
        structure = structure_of(imported.model, oscillating)
        ann = ann_values(structure)
    # static sines over several periods: their argument range-reduced once per point (sine_range.py)
    sines = reducible_sines(structure, ann) if options.links else []
    if sines:
        graph = reduce_sines(imported.model, sines, imported.dtype)
        structure = structure_of(graph, oscillating or options.first_layer == "analog")
        ann = ann_values(structure)
    check_calibration_memory([(int(np.prod(ann[layer.activation.output].shape[:-1])), layer.width)
                              for layer in structure.layers], options.timesteps, imported.dtype.itemsize)
    imported_at = time.perf_counter()
    say(f"calibrating (T={options.timesteps}, pieces={options.pieces}, "
        f"calibration={'+'.join(options.methods) or 'none'})")
    # the analog tail run exactly: the auto passes' output error, finetune's loss (and its J, on demand)
    tail = output_tail(structure.model, structure, ann, feeds) \
        if not grid_model and (options.pieces == "auto" or options.end_to_end) else None
    grid = grid_error(structure.model, structure, ann, feeds) if options.pieces == "auto" and grid_model else None
    result_calibration = calibrate(structure, ann, options, tail, grid, progress or silent, warm_start)
    metadata = {
        spec.META_FORMAT: spec.FORMAT_VERSION, spec.META_TIMESTEPS: str(options.timesteps),
        spec.META_ENCODING: "direct", spec.META_READOUT: options.readout, spec.META_DOMAIN: format_domain(box),
        spec.META_NEURON: options.neuron, spec.META_SOURCE: imported.path.name,
    }
    artifact = build_artifact(structure.model, structure, result_calibration, metadata)
    calibrated_at = time.perf_counter()
    result = ConversionResult(model=artifact, structure=structure, calibration=result_calibration,
                              domain=box, options=options, source=imported.path)
    timing = {"convert": time.perf_counter() - started, "calibrate": calibrated_at - imported_at}
    if validate:
        _validate(result, imported, box, validation_points, seed, timing, energy_table, say, started)
    return result


def _validate(result: ConversionResult, imported: ImportedModel, box: Domain, points: int, seed: int,
              timing: dict, energy_table: str | None, say: Progress, started: float) -> None:
    """``result.report``: the conversion measured on ``points`` fresh domain points (seed + 1,000,003)."""
    say(f"validating on {points} fresh domain points")
    validating_since = time.perf_counter()
    inputs = validation_inputs(imported, box, points, np.random.default_rng(seed + 1_000_003))
    result.report = finish_timing(build_report(imported, result, inputs, timing, energy_table), started,
                                  validating_since)


def _convert_choosing_gates(arguments: dict, imported: ImportedModel, box: Domain, options: ConversionOptions,
                            say: Progress, started: float) -> ConversionResult:
    """Both gate variants converted, the one ``gates.choose_gates`` picks on selection points kept and
    validated; its report holds ``gates_choice`` (the candidates and the choice)."""
    results = {}
    for variant in VARIANTS:
        say(f"gates {variant}: converting")
        results[variant] = convert(**{**arguments, "gates": variant, "validate": False})
    measured = measure_variants(imported, box, results, options.seed, arguments["energy_table"])
    chosen = choose_gates(measured, promised_error(options))
    say("gates: " + ", ".join(f"{v} error {e:.2e} at {r:.2f}x ANN" for v, (e, r) in measured.items()) +
        f"; keeping {chosen}")
    result = results[chosen]
    if arguments["validate"]:
        _validate(result, imported, box, arguments["validation_points"], options.seed,
                  {"convert": time.perf_counter() - started}, arguments["energy_table"], say, started)
        result.report["gates_choice"] = gates_report(measured, chosen, options)
    return result


def _tensors_needed(structure: Structure) -> list[str]:
    names = []
    for layer in structure.layers:
        names += [layer.affine.input, layer.affine.output, layer.activation.output]
    for readout in structure.readouts:
        names += [readout.input, readout.output]
    links = [l.link for l in structure.layers if l.link is not None] + list(structure.readout_links.values())
    for link in links + structure.decoded:
        names += link.source_tensors + link.statics + [link.output]
    return list(dict.fromkeys(names))


__all__ = ["convert", "ConversionResult", "ImportedModel", "ann_session"]
