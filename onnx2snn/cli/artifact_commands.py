"""Subcommands that take an artifact elsewhere: ``verify`` (all runtimes agree), ``standard`` (plain
ONNX with a Loop over T) and ``export-nir`` (a NIR graph, checked against the artifact before it is written)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..saving import atomic_write, check_output_path
from .common import EXIT_ERROR, EXIT_OK, UsageError, say_compiling, write_json


def verify_command(args) -> int:
    import runtimes
    from runtimes import spec
    import onnx
    from runtimes.verify import verify
    from ..domain import parse_domain, sample_domain
    snn = runtimes.load(args.model, timesteps=args.timesteps)
    text = snn.metadata.get(spec.META_DOMAIN)
    if text is None:
        raise runtimes.ArtifactError(f"{args.model}: no '{spec.META_DOMAIN}' metadata; cannot sample points")
    shapes = {name: [d.dim_value or None for d in value.type.tensor_type.shape.dim]
              for name, value in snn.inputs.items()}
    first = next(iter(snn.inputs.values()))
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(first.type.tensor_type.elem_type))
    points = sample_domain(parse_domain(text), shapes, args.points, np.random.default_rng(args.seed), dtype)
    say_compiling()
    report = verify(snn.model, points, timesteps=args.timesteps)
    for line in report.lines():
        print(line)
    if args.report_json:
        write_json(args.report_json, report.to_dict())
    if not report.ok:
        print(f"onnx2snn: error: {args.model}: the runtimes disagree beyond the bound "
              f"(relative L2 {report.rtol:g}, spike counts {report.spike_rtol:g})", file=sys.stderr)
        return EXIT_ERROR
    print(f"all {1 + len(report.backends)} runtime(s) agree on {args.points} domain points")
    return EXIT_OK


def standard_command(args) -> int:
    import runtimes
    from runtimes.onnxruntime_backend import to_standard_onnx
    output = check_output_path(args.output, args.model)
    snn = runtimes.load(args.model, timesteps=args.timesteps)
    model = to_standard_onnx(snn.model, snn.timesteps)
    atomic_write(output, lambda tmp: tmp.write_bytes(model.SerializeToString()))
    outputs = ", ".join(snn.output_names)
    print(f"wrote {output}  (standard ONNX, T={snn.timesteps}: Loop over time steps; outputs {outputs} "
          f"plus onnx2snn.events/* spike counts)")
    return EXIT_OK


def export_nir_command(args) -> int:
    """The artifact as a NIR graph, run against the artifact's numpy run before it is written
    (``nir_export``, ``nir_check``)."""
    from runtimes.loading import load_onnx
    from ..errors import ModelError, OutputPathError
    from ..nir_check import check_exact, check_onoff, domain_points
    from ..nir_export import export_nir, write_nir
    output = check_output_path(args.output, args.model)
    if output.exists():
        raise OutputPathError(f"{output}: exists; export-nir does not overwrite files, remove it or choose another -o")
    model = load_onnx(Path(args.model), ModelError)
    exported = export_nir(model, args.form, source=args.model)
    if args.input:
        from ..inputs import load_arrays
        points = load_arrays(Path(args.input), list(exported.inputs))
    else:
        points = domain_points(model, args.points, args.seed, args.model)
    if args.sinabs_python and args.form != "onoff":
        raise UsageError("onnx2snn export-nir: --sinabs-python runs the ON/OFF form (sinabs imports only that); "
                         "give --form onoff")
    check = check_exact(exported, model, points) if args.form == "exact" else check_onoff(exported, model, points)
    if args.form == "exact" and check.mismatches:
        raise ModelError(f"internal error: the exact NIR form of {args.model} differs from the artifact in "
                         f"{check.mismatches} of {check.events} spikes ({check.per_layer}); nothing was written")
    write_nir(exported, output)
    import nir
    neurons = sum(len(np.unique(layer.neurons)) for layer in exported.layers)
    print(f"wrote {output}  (NIR {nir.version}, {exported.form} form, T={exported.timesteps}): "
          f"{len(exported.layers)} spiking layer(s), {neurons:,} neurons as {exported.channels:,} spike channels, "
          f"{len(exported.graph.nodes)} nodes; inputs {list(exported.inputs)}, outputs {list(exported.outputs)} "
          f"(decoded: the mean over T steps of each output node); nothing left out")
    for layer in exported.layers:
        print(f"  {layer.node} <- {layer.artifact_node}: {len(layer.neurons):,} channels "
              f"({int((layer.signs > 0).sum()):,} +, {int((layer.signs < 0).sum()):,} -)")
    if args.form == "exact":
        print(f"checked on {check.points} points: all {check.events:,} spikes of the artifact (numpy reference run "
              f"in {check.dtype}, the export's precision) reproduced by onnx2snn's NIR executor, decoded outputs "
              f"within relative L2 {check.rel_l2:.1e}; against the artifact's run in its own precision "
              f"{check.rel_l2_shipped:.1e}, as close as the artifact's own {check.dtype} run ({check.rel_l2_precision:.1e}: "
              f"rounding flips spikes at a threshold)")
    else:
        print(f"onnx2snn: warning: the ON/OFF form is lossy: decoded outputs against the artifact on {check.points} "
              f"points at T={check.timesteps}: relative L2 {check.rel_l2:.2%} with NIR's IF reset to v_reset = 0, "
              f"{check.rel_l2_subtract:.2%} with a subtractive reset (as sinabs and spyx run IF); "
              f"--form exact reproduces the artifact's spikes", file=sys.stderr)
        if args.sinabs_python:
            from ..nir_check import check_sinabs
            sinabs = check_sinabs(exported, model, points, args.sinabs_python)
            print(f"through sinabs ({args.sinabs_python}): relative L2 {sinabs.rel_l2:.2%} against the artifact "
                  f"with one spike per step (sinabs's SingleSpike), {sinabs.rel_l2_multi:.3g} as sinabs.from_nir "
                  f"imports it (MultiSpike: several spikes per step, which the artifact's neurons never send)")
    return EXIT_OK
