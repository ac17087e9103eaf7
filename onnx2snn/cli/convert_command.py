"""``onnx2snn convert`` (the default command): options to ``convert`` / ``cheapest_conversion`` /
the delta conversion, the artifact written, the report printed, a warning when the error misses its aim."""

from __future__ import annotations

import sys
from pathlib import Path

from ..saving import check_output_path
from .common import (EXIT_OK, Progress, UsageError, report_directory, report_timesteps, say_compiling, short,
                     write_document, write_json)
from .report_text import print_report


def convert_command(args) -> int:
    from ..convert import convert
    source = Path(args.model)
    output = Path(args.output) if args.output else _default_output(source)
    check_output_path(output, source)
    if args.report_json:
        check_output_path(args.report_json, source)
    report_dir = report_directory(args.report, output)
    options = _convert_options(args)
    progress = None if args.quiet else Progress()
    if args.energy_table:
        from ..energy import load_tables
        load_tables(args.energy_table)              # a bad table fails before any work
    say_compiling(args.quiet)
    common = dict(domain=";".join(args.domain) if args.domain else None, calib=args.calib, samples=args.samples,
                  seed=args.seed, validation_points=args.validation_points,
                  progress=progress, energy_table=args.energy_table)
    if args.coding == "delta":
        return _convert_delta(args, source, output, common, options, report_dir)
    if args.graded:
        raise UsageError("onnx2snn convert: --graded is for --coding delta")
    if args.target_error is not None:
        from ..search import cheapest_conversion
        chosen = [flag for flag, value in [("-T", args.timesteps), ("--pieces", args.pieces),
                                           ("--calibration", args.calibration), ("--first-layer", args.first_layer),
                                           ("--rest", args.rest), ("--preset", args.preset),
                                           ("--coding", args.coding)] if value is not None]
        if chosen:
            raise UsageError(f"onnx2snn convert: --target-error searches {', '.join(chosen)} itself; "
                             f"give one or the other")
        searched = {k: v for k, v in options.items() if k not in ("pieces", "calibration")}
        result = cheapest_conversion(source, args.target_error, args.energy_model or "45nm_fp32", **common,
                                     **searched)
    elif args.energy_model is not None:
        raise UsageError("onnx2snn convert: --energy-model chooses what --target-error minimises; give "
                         "--target-error E too (every report shows all cost tables)")
    else:
        result = convert(source, timesteps=args.timesteps or 32, **common, **options)
    result.save(output)
    if args.report_json:
        write_json(args.report_json, result.report)
    print_report(result.report, output)
    if args.target_error is None:           # a search has its own goal, and meets it or says so
        _warn_accuracy(result)
    if report_dir is not None:
        from ..evaluate import evaluate
        steps = report_timesteps(result.options.timesteps, result.options.coding)
        evaluation = evaluate(result.model, ann=source, timesteps=steps, points=args.validation_points,
                              seed=args.seed, energy_table=args.energy_table, progress=progress)
        write_document(report_dir, evaluation, output)
    return EXIT_OK


def _convert_delta(args, source: Path, output: Path, common: dict, options: dict, report_dir) -> int:
    """``convert --coding delta``: the streaming conversion (``onnx2snn.delta``), its report, and a warning
    when the fresh points miss the target error."""
    from ..convert import convert
    given = [flag for flag, value in [("-T", args.timesteps), ("--energy-model", args.energy_model),
                                      ("--report", report_dir), ("--preset", args.preset)] if value is not None]
    if given:
        raise UsageError(f"onnx2snn convert: --coding delta runs one step per point and chooses its event sizes "
                         f"for --target-error; it does not take {', '.join(given)}")
    result = convert(source, target_error=args.target_error, graded=args.graded, **common, **options)
    result.save(output)
    if args.report_json:
        write_json(args.report_json, result.report)
    print_report(result.report, output)
    error, target = result.report["validation"]["rel_l2_snn_vs_ann"], result.report["target_error"]
    if error > target:
        print(f"onnx2snn: warning: SNN vs ANN error {short(error)} on fresh ordered points is above the target "
              f"{short(target)}; a smaller --target-error may help", file=sys.stderr)
    return EXIT_OK


def _warn_accuracy(result) -> None:
    """A warning on stderr when the validation error is above what the conversion aims for
    (``calibration.options.promised_error``), naming the options that lower it."""
    from ..calibration.options import promised_error
    error, aim = result.report["validation"]["rel_l2_snn_vs_ann"], promised_error(result.options)
    if error <= aim:
        return
    options = result.options
    hints = ["a larger -T"]
    if options.pieces == "auto":
        hints.append("a smaller --tolerance")
    else:
        hints.append("--pieces auto")
    if options.pieces == 1 and "finetune" not in options.methods:
        hints.append("--calibration finetune")
    print(f"onnx2snn: warning: SNN vs ANN error {short(error)} is above the {short(aim)} this conversion aims "
          f"for; {', '.join(hints[:-1])} or {hints[-1]} may help", file=sys.stderr)


def _convert_options(args) -> dict:
    if args.calibration is not None:
        from ..calibration import METHODS
        unknown = [m for m in args.calibration.split("+") if m not in METHODS]
        if unknown:
            raise UsageError(f"onnx2snn convert: --calibration: unknown method(s) {', '.join(map(repr, unknown))}; "
                             f"use {', '.join(METHODS)}, combined with +")
    options = {"pieces": args.pieces, "calibration": args.calibration, "threshold": args.threshold,
               "neuron": args.neuron, "readout": args.readout, "v0": args.v0, "shift": args.shift}
    if args.tolerance is not None:
        options["tolerance"] = args.tolerance
    for key in ("finetune_iterations", "first_layer", "gates", "rest", "spike_penalty", "coding"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.preset == "paper":
        preset = {"pieces": 1, "calibration": "advanced", "threshold": "max", "neuron": "floor",
                  "readout": "spiking"}
        options = {k: (v if v is not None else preset.get(k)) for k, v in options.items()}
    defaults = {"pieces": "auto", "threshold": "max", "neuron": "round", "readout": "analog"}
    return {k: (v if v is not None else defaults.get(k)) for k, v in options.items()}


def _default_output(source: Path) -> Path:
    stem = source.name[:-5] if source.name.endswith(".onnx") else source.name
    return source.with_name(stem + ".snn.onnx")
