"""The ``onnx2snn`` command line: the only module that prints.

Exit codes: 0 success; 1 the input or the model cannot be processed (one line on stderr naming the
problem, no traceback unless ``--traceback``); 2 usage error; 130 interrupted (Ctrl-C).  A failed command
leaves no partial output file behind.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from runtimes.errors import Onnx2SnnError

from . import __version__
from .saving import atomic_write, check_output_path

COMMANDS = ("convert", "run", "evaluate", "inspect", "verify", "standard", "train", "export-nir")
REPORT_TIMESTEPS = {"rate": (8, 16, 32, 64, 128), "phase": (4, 5, 6, 7, 8, 10, 12)}   # --report's T sweep, by coding
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LONG_RUN_SECONDS = 10.0         # runs estimated to take longer say so first


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _pieces(text: str):
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return value


def _timesteps_list(text: str) -> list[int]:
    return [_positive(part) for part in text.split(",")]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="onnx2snn", description="Convert PINNs (ONNX) into spiking neural networks.")
    parser.add_argument("--version", action="version", version=f"onnx2snn {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    convert = sub.add_parser("convert", help="convert an ONNX model into a spiking artifact")
    convert.add_argument("model", help="the ONNX model (PINN)")
    convert.add_argument("-o", "--output", help="where the SNN goes (default: MODEL.snn.onnx beside the input)")
    convert.add_argument("-T", "--timesteps", type=_positive, default=None, help="simulation steps (default 32)")
    convert.add_argument("--domain", action="append", metavar="NAME=LO:HI[,LO:HI...]",
                         help="box of each model input, one LO:HI per feature; repeat per input, each input once; "
                              "NAME= may be left out for a model with one input (default: the model's metadata)")
    convert.add_argument("--calib", help="calibration inputs: .npy (single input) or .npz keyed by input name")
    convert.add_argument("--samples", type=_positive, default=4096, help="calibration points (default 4096)")
    convert.add_argument("--seed", type=int, default=0, help="all randomness (default 0)")
    convert.add_argument("--report-json", help="write the machine-readable report here")
    convert.add_argument("--pieces", type=_pieces, default=None,
                         help="neurons per unit: 1 = one signed neuron (papers), K > 1 = PWL, auto (default)")
    convert.add_argument("--calibration", help="none, light, potential, advanced, refit, finetune, combined with + "
                         "(default: finetune for --pieces 1, refit otherwise); forward (last, --pieces 1): "
                         "finetune's fit with forward-only gradients (node perturbation) instead of back-propagation")
    convert.add_argument("--threshold", default=None, help="max (default), percentile:P or mse")
    convert.add_argument("--neuron", choices=["round", "floor"], default=None,
                         help="neuron model (default round; floor: the papers' neuron, --pieces 1 only)")
    convert.add_argument("--readout", choices=["analog", "spiking"], default=None, help="readout (default analog)")
    convert.add_argument("--preset", choices=["paper"], help="the papers' pipeline: --pieces 1 --threshold max "
                         "--neuron floor --calibration advanced --readout spiking (explicit options win)")
    convert.add_argument("--tolerance", type=float, default=None,
                         help="--pieces auto: relative output error budget that sets the pieces per unit "
                              "(default 4e-3·(32/T)^0.66: 4e-3 at T=32, 1.6e-3 at T=128)")
    convert.add_argument("--finetune-iterations", type=_positive, default=None, metavar="N",
                         help="quantised Adam steps of the end-to-end calibration (default 600), after two runs of "
                              "16x as many noisy analog ones; more lower the error at proportional cost "
                              "(residual fixture, --pieces 1, T=32: 1.5e-2 at 600, 1.1e-2 at 1,500)")
    convert.add_argument("--first-layer", choices=["spiking", "analog"], default=None,
                         help="analog: the first hidden layer is computed once per point and encoded into the next "
                              "layer instead of spending neurons and spikes (default spiking)")
    convert.add_argument("--rest", choices=["zero", "typical"], default=None,
                         help="--pieces 1: the value a unit sends no spikes at; typical = where its spikes cost "
                              "least on the calibration points (e.g. a saturated unit's), the offset folded into "
                              "the next layer (default zero)")
    convert.add_argument("--coding", choices=["rate", "phase", "delta"], default=None,
                         help="rate (default): values as spike rates over T steps; phase: weighted spikes, each "
                              "unit sends the signed binary digits of its value in T steps (one neuron per "
                              "unit, fitted end to end; T digits ~ a rate code of 2^(T-1) steps); delta: "
                              "streaming sigma-delta neurons for ordered points, one point per step, each unit "
                              "sending only the changes of its value (--target-error E sets their sizes, "
                              "default 3e-3; stream points with 'run --order')")
    convert.add_argument("--graded", action="store_true",
                         help="--coding delta: one graded event per unit that changes (chips with graded "
                              "spikes) instead of binary spikes")
    convert.add_argument("--spike-penalty", type=float, default=None, metavar="LAMBDA",
                         help="finetune: weight of the SNN's synaptic operations per ANN MAC in the loss "
                              "(trades error for spikes; default 0)")
    convert.add_argument("--target-error", type=float, default=None, metavar="E",
                         help="search T, the method, the first layer and the rest values for the cheapest SNN within "
                              "relative L2 error E of the ANN on points not used to fit it (see --energy-model)")
    convert.add_argument("--energy-model", default=None,
                         help="cost table that --target-error minimises: 45nm_fp32 (default), 45nm_int8, loihi")
    convert.add_argument("--energy-table", metavar="FILE",
                         help="JSON file of further cost tables (pJ per mac, synop, neuron_update, activation, add, "
                              "mult), reported beside the shipped ones and usable as --energy-model")
    convert.add_argument("--v0", type=float, default=None, metavar="FRACTION",
                         help="initial potential as a fraction of θ (default 0 for round, 0.5 for floor)")
    convert.add_argument("--shift", action="store_true", help="Deng & Gu's θ/(2T) bias shift (floor neurons)")
    convert.add_argument("--validation-points", type=_positive, default=2048, help="fresh points for the report")
    convert.add_argument("--report", nargs="?", const="", metavar="DIR",
                         help="write report.md with plots (error over the domain, error and energy against T, "
                              "spikes per layer and neuron, energy breakdown) and report.json into DIR "
                              "(default: OUTPUT without .onnx, plus .report)")
    convert.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")

    run = sub.add_parser("run", help="run a spiking artifact on inputs")
    run.add_argument("model", help="the spiking artifact (.snn.onnx)")
    run.add_argument("--input", action="append", required=True, metavar="[NAME=]X.npy",
                     help="input array; NAME=X.npy per input for several inputs")
    run.add_argument("--backend", default="numpy", help="numpy (default), snntorch, onnxruntime")
    run.add_argument("--device", help="torch device of --backend snntorch: cpu (default), cuda, cuda:1, ...")
    run.add_argument("-o", "--output", help="Y.npy (single output) or Y.npz (default: beside the artifact)")
    run.add_argument("-T", "--timesteps", type=_positive, help="override the artifact's T")
    run.add_argument("--lowpass", choices=("dct", "fft"), help="low-pass filter the outputs along their grid "
                     "axes (DCT, or FFT with mirror extension), for outputs on a regular grid")
    run.add_argument("--grid", type=_grid, metavar="N1xN2[x...]", help="--lowpass: the points lie on this "
                     "grid, flattened in C order (needed for points of several coordinates; points of one "
                     "coordinate must be sorted and equally spaced)")
    run.add_argument("--cutoff", default="auto", type=_cutoff, help="fraction of the modes kept per grid axis, "
                     "or auto (default): chosen against the ANN's outputs")
    run.add_argument("--ann", help="the original network: the errors against it are printed, and it is the "
                     "reference of --cutoff auto (default for those: the artifact's source model beside it)")
    run.add_argument("--order", choices=("boustrophedon", "hilbert", "random", "keep"), default=None,
                     help="delta-coded artifacts: the path the stream visits the points along (default "
                     "boustrophedon; keep: your order, e.g. a trajectory); outputs come back in your order")
    run.add_argument("--report-json", help="write this run's report here: errors against the ANN, spikes, "
                     "synaptic operations and energy per point (needs the ANN: --ann or beside the artifact)")

    evaluate = sub.add_parser("evaluate", help="measure a spiking artifact against its ANN (and the exact "
                              "solution where known): error, spikes and energy at one or several T")
    evaluate.add_argument("model", help="the spiking artifact (.snn.onnx)")
    evaluate.add_argument("--ann", help="the original network (default: the artifact's source model beside it)")
    evaluate.add_argument("-T", "--timesteps", action="append", type=_timesteps_list, metavar="N[,N...]",
                          help="time steps to run the artifact for; repeat or list (default: the artifact's T)")
    where = evaluate.add_mutually_exclusive_group()
    where.add_argument("--points", type=_positive, default=2048, help="fresh domain points (default 2048)")
    where.add_argument("--input", metavar="X.npy", help="evaluate at these inputs: .npy (one input) or .npz by name")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the points (default 0)")
    evaluate.add_argument("--energy-table", metavar="FILE", help="JSON file of further cost tables")
    evaluate.add_argument("--report-json", help="write the machine-readable report here")
    evaluate.add_argument("--report", nargs="?", const="", metavar="DIR",
                          help="write report.md with plots and report.json into DIR (default: beside the artifact)")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    inspect = sub.add_parser("inspect", help="what would be converted, what stays analog and why")
    inspect.add_argument("model")

    verify = sub.add_parser("verify", help="check that all installed runtimes agree on seeded domain points")
    verify.add_argument("model", help="the spiking artifact (.snn.onnx)")
    verify.add_argument("--points", type=_positive, default=1024, help="domain points (default 1024)")
    verify.add_argument("--seed", type=int, default=0, help="seed of the points (default 0)")
    verify.add_argument("-T", "--timesteps", type=_positive, help="override the artifact's T")
    verify.add_argument("--report-json", help="write the comparison here")

    standard = sub.add_parser("standard", help="write the artifact as standard ONNX (a Loop over T, no custom "
                              "ops) that stock onnxruntime or any ONNX runtime executes")
    standard.add_argument("model", help="the spiking artifact (.snn.onnx)")
    standard.add_argument("-o", "--output", required=True, help="where the standard-ONNX model goes")
    standard.add_argument("-T", "--timesteps", type=_positive, help="override the artifact's T")

    train = sub.add_parser("train", help="train a spiking network with forward-only gradients (or BPTT, the "
                           "baseline) and write it as an artifact")
    train.add_argument("spec", help="a shipped task (x2, ricker, deeponet-poisson, separable-2d) or a JSON "
                       "specification file ({\"data\": \"points.npz\", \"widths\": [64, 64]})")
    train.add_argument("--estimator", default="rfg-layer",
                       choices=["bptt", "rfg-global", "rfg-layer", "weight-fd", "activity", "activity-rate"],
                       help="gradient estimator: bptt (the baseline), the paper's forward gradients rfg-global and "
                            "rfg-layer (default), weight-fd (finite differences), activity / activity-rate "
                            "(perturbed currents per step / per point)")
    train.add_argument("--budget", type=float, default=9000.0, metavar="FPE",
                       help="training budget in forward-pass equivalents of one minibatch (default 9000)")
    train.add_argument("-T", "--timesteps", type=_positive, default=None, help="simulation steps (default 32)")
    train.add_argument("--directions", type=_positive, default=1, metavar="K",
                       help="random directions averaged per step (default 1)")
    train.add_argument("--learning-rate", type=float, default=None, help="Adam's step (default per estimator)")
    train.add_argument("--surrogate", choices=["gaussian", "stein", "straight"], default="gaussian",
                       help="spike derivative: Gaussian, Stein's estimate from noisy forward passes, or the rate "
                            "code's straight-through rule")
    train.add_argument("--sigma", type=float, default=None, help="surrogate width σ (default per task)")
    train.add_argument("--seed", type=int, default=0, help="all randomness (default 0)")
    train.add_argument("-o", "--output", help="where the trained SNN goes (default: TASK.snn.onnx here)")
    train.add_argument("--report-json", help="write the training report (loss curve, errors) here")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")

    export_nir = sub.add_parser("export-nir", help="write the artifact as a NIR graph (neuromorphic hand-off), checked "
                                "by running it against the artifact")
    export_nir.add_argument("model", help="the spiking artifact (.snn.onnx)")
    export_nir.add_argument("-o", "--output", required=True, help="the NIR file (HDF5) to write; never overwritten")
    export_nir.add_argument("--form", choices=["exact", "onoff"], default="exact",
                            help="exact (default): integrator, threshold and reset edge per layer, the artifact's "
                                 "spikes; onoff: two unsigned nir.IF populations per layer, what released NIR "
                                 "importers load, lossy (its measured error is printed)")
    where = export_nir.add_mutually_exclusive_group()
    where.add_argument("--points", type=_positive, default=256, help="domain points the export is checked on "
                       "(default 256)")
    where.add_argument("--input", metavar="X.npy", help="check on these inputs instead: .npy (one input) or .npz")
    export_nir.add_argument("--seed", type=int, default=0, help="seed of the points (default 0)")

    for p in (convert, run, evaluate, inspect, verify, standard, train, export_nir):
        p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["convert"] + argv
    traceback_wanted = "--traceback" in argv
    argv = _join_negative_values(argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return EXIT_USAGE
        handler = {"convert": _convert, "run": _run, "evaluate": _evaluate, "inspect": _inspect, "verify": _verify,
                   "standard": _standard, "train": _train, "export-nir": _export_nir}[args.command]
        return handler(args)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:          # output piped into a closed reader (e.g. `| head`)
        sys.stderr.close()
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("onnx2snn: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Onnx2SnnError as e:
        if traceback_wanted:
            raise
        print(f"onnx2snn: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        if traceback_wanted:
            raise
        print("onnx2snn: error: out of memory; a smaller -T, fewer --samples or fewer points may help "
              "(--traceback shows where)", file=sys.stderr)
        return EXIT_ERROR


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--domain -1:1`` as ``--domain=-1:1``: argparse reads a value that starts with '-' (and is not a
    plain negative number) as an option and fails with a bare 'expected one argument'."""
    joined, k = [], 0
    while k < len(argv):
        if argv[k] == "--domain" and k + 1 < len(argv) and re.match(r"-[\d.]", argv[k + 1]):
            joined.append(f"--domain={argv[k + 1]}")
            k += 2
        else:
            joined.append(argv[k])
            k += 1
    return joined


def _progress(message: str) -> None:
    print(f"[onnx2snn] {message}", file=sys.stderr, flush=True)


class _Progress:
    """Renders the library's progress callback (``onnx2snn.progress``) on stderr: a stage line for
    ``progress(message)``; for ``progress(message, done, total, detail)`` a tqdm bar per stage on a
    terminal, nothing when stderr is not one (logs get the stage lines only)."""

    def __init__(self):
        self.terminal = sys.stderr.isatty()
        self.bar, self.label = None, None

    def __call__(self, message: str, done: int | None = None, total: int | None = None,
                 detail: str | None = None) -> None:
        if done is None:
            self.close()
            _progress(message)
            return
        if not self.terminal:
            return
        if self.bar is None or self.label != message:
            from tqdm import tqdm
            self.close()
            self.bar = tqdm(total=total, desc=message, file=sys.stderr, leave=False,
                            dynamic_ncols=True)
            self.label = message
        self.bar.n = done
        if detail:
            self.bar.set_postfix_str(detail, refresh=False)
        self.bar.refresh()
        if total is not None and done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar, self.label = None, None


def _say_compiling(quiet: bool = False) -> None:
    """Once, before numba's first compile of the spiking kernels (``runtimes.kernels.needs_compile``)."""
    from runtimes import kernels
    if not quiet and kernels.needs_compile():
        _progress("compiling spiking kernels (first run only, cached afterwards)")


def _convert(args) -> int:
    from .convert import convert
    source = Path(args.model)
    output = Path(args.output) if args.output else _default_output(source)
    check_output_path(output, source)
    if args.report_json:
        check_output_path(args.report_json, source)
    report_dir = _report_directory(args.report, output)
    options = _convert_options(args)
    progress = None if args.quiet else _Progress()
    if args.energy_table:
        from .energy import load_tables
        load_tables(args.energy_table)              # a bad table fails before any work
    _say_compiling(args.quiet)
    common = dict(domain=";".join(args.domain) if args.domain else None, calib=args.calib, samples=args.samples,
                  seed=args.seed, validation_points=args.validation_points,
                  progress=progress, energy_table=args.energy_table)
    if args.coding == "delta":
        return _convert_delta(args, source, output, common, options, report_dir)
    if args.graded:
        raise UsageError("onnx2snn convert: --graded is for --coding delta")
    if args.target_error is not None:
        from .search import cheapest_conversion
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
        _write_json(args.report_json, result.report)
    _print_report(result.report, output)
    if args.target_error is None:           # a search has its own goal, and meets it or says so
        _warn_accuracy(result)
    if report_dir is not None:
        from .evaluate import evaluate
        steps = report_timesteps(result.options.timesteps, result.options.coding)
        evaluation = evaluate(result.model, ann=source, timesteps=steps, points=args.validation_points,
                              seed=args.seed, energy_table=args.energy_table, progress=progress)
        _write_document(report_dir, evaluation, output)
    return EXIT_OK


def _convert_delta(args, source: Path, output: Path, common: dict, options: dict, report_dir) -> int:
    """``convert --coding delta``: the streaming conversion (``onnx2snn.delta``), its report, and a warning
    when the fresh points miss the target error."""
    from .convert import convert
    given = [flag for flag, value in [("-T", args.timesteps), ("--energy-model", args.energy_model),
                                      ("--report", report_dir), ("--preset", args.preset)] if value is not None]
    if given:
        raise UsageError(f"onnx2snn convert: --coding delta runs one step per point and chooses its event sizes "
                         f"for --target-error; it does not take {', '.join(given)}")
    result = convert(source, target_error=args.target_error, graded=args.graded, **common, **options)
    result.save(output)
    if args.report_json:
        _write_json(args.report_json, result.report)
    _print_report(result.report, output)
    error, target = result.report["validation"]["rel_l2_snn_vs_ann"], result.report["target_error"]
    if error > target:
        print(f"onnx2snn: warning: SNN vs ANN error {_short(error)} on fresh ordered points is above the target "
              f"{_short(target)}; a smaller --target-error may help", file=sys.stderr)
    return EXIT_OK


def _warn_accuracy(result) -> None:
    """A warning on stderr when the validation error is above what the conversion aims for
    (``calibration.options.promised_error``), naming the options that lower it."""
    from .calibration.options import promised_error
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
    print(f"onnx2snn: warning: SNN vs ANN error {_short(error)} is above the {_short(aim)} this conversion aims "
          f"for; {', '.join(hints[:-1])} or {hints[-1]} may help", file=sys.stderr)


def _short(value: float) -> str:
    """``1.2e-2`` for 0.012 (two significant digits, no exponent padding)."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _convert_options(args) -> dict:
    if args.calibration is not None:
        from .calibration import METHODS
        unknown = [m for m in args.calibration.split("+") if m not in METHODS]
        if unknown:
            raise UsageError(f"onnx2snn convert: --calibration: unknown method(s) {', '.join(map(repr, unknown))}; "
                             f"use {', '.join(METHODS)}, combined with +")
    options = {"pieces": args.pieces, "calibration": args.calibration, "threshold": args.threshold,
               "neuron": args.neuron, "readout": args.readout, "v0": args.v0, "shift": args.shift}
    if args.tolerance is not None:
        options["tolerance"] = args.tolerance
    for key in ("finetune_iterations", "first_layer", "rest", "spike_penalty", "coding"):
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


def _print_report(report: dict, output: Path) -> None:
    """The report on stdout; the time is the report's ``timing_s`` total (validation included, as said)."""
    v, timing = report["validation"], report["timing_s"]
    coding = f"coding={report['coding']}, " if report.get("coding", "rate") != "rate" else ""
    print(f"wrote {output}  (T={report['timesteps']}, {coding}pieces={report['pieces']}, "
          f"calibration={report['calibration']}, {timing['total']:.1f} s including {timing['validate']:.1f} s "
          f"validation)")
    print(f"SNN vs ANN on {v['points']} fresh domain points: relative L2 {v['rel_l2_snn_vs_ann']:.3e}, "
          f"max abs {v['max_abs_snn_vs_ann']:.3e}")
    for key in ("rel_l2_snn_vs_exact", "rel_l2_ann_vs_exact"):
        if key in v:
            print(f"  {key.replace('_', ' ').replace('rel l2 ', 'relative L2 ')}: {v[key]:.3e}")
    print(f"{'layer':<32} {'activation':<12} {'units':>6} {'neurons':>8} {'pieces':>7} {'spike rate':>10}")
    for layer in report["layers"]:
        print(f"{layer['name'][:32]:<32} {layer['activation'][:12]:<12} {layer['neurons']:>6} "
              f"{layer['spiking_neurons']:>8} {layer['pieces_mean']:>7.2f} {layer['spike_rate']:>10.3f}")
    print(f"per sample: {report['spikes_per_sample']:.1f} spikes, {report['synops_per_sample']:.1f} synaptic ops, "
          f"{report['neuron_updates_per_sample']:.0f} neuron updates, {report['first_layer_macs_per_sample']:.0f} "
          f"first-layer MACs, {report['analog_macs_per_sample']:.0f} analog MACs; "
          f"ANN {report['ann_macs_per_sample']:.0f} MACs; {report['spikes_per_synapse']:.2f} spikes per synapse")
    print(_spiking_share(report))
    if any(not a["spikes"] for a in report["activations"]):
        for line in activation_lines(report["activations"]):
            print(line)
    for line in energy_lines(report):
        print(line)
    if report.get("coding") == "delta":
        from .delta.stream import summary_lines
        for line in summary_lines(report):
            print(line)
    if report["analog_nodes"]:
        print(f"{len(report['analog_nodes'])} node(s) stay analog (see 'onnx2snn inspect')")
    if "search" in report:
        print(f"searched for the cheapest SNN within {report['target_error']:g} of the ANN "
              f"({report['energy_model']}; errors on selection points, * = Pareto front):")
        for row in report["search"]:
            print(f"  {'*' if row['pareto'] else ' '} {row['method']:<8} T={row['timesteps']:<4} first layer "
                  f"{row['first_layer']:<7} rest {row['rest']:<7} error {row['rel_l2_snn_vs_ann']:.2e}  "
                  f"energy {row['energy_ratio']:.3f}x  ({row['seconds']:.0f} s"
                  + (f", {row['finetune_iterations']} fit iterations)" if "finetune_iterations" in row else ")"))


def _spiking_share(report: dict) -> str:
    """How much of the network spikes: the ANN's MACs that became synaptic operations (the rest, first
    layers and analog nodes, still run as MACs) and the hidden layers that spike (``structure.hidden_layers``)."""
    from .structure import hidden_layers
    spiking, hidden = hidden_layers(report)
    return (f"{100 * report['spiking_mac_fraction']:.0f}% of the ANN's MACs became synaptic operations; "
            f"{spiking} of {hidden} hidden layers spike")


def activation_lines(activations: list[dict]) -> list[str]:
    """Per activation of the model: whether it spikes, and why not (``Structure.activations``)."""
    spiking = sum(a["spikes"] for a in activations)
    lines = [f"activations: {spiking} of {len(activations)} spike"]
    for a in activations:
        lines.append(f"  {a['name']} ({a['op']}): " + ("spikes" if a["spikes"] else f"analog, {a['reason']}"))
    return lines


def energy_lines(report: dict) -> list[str]:
    """The energy table of a report: each cost model's SNN and ANN energy per sample and their ratio, and
    what the SNN spends it on."""
    lines = ["energy per sample, compute only (same cost table for both sides):"]
    for name, e in report["energy"].items():
        spent = report["energy_breakdown_pj"][name]
        total = e["snn_pj"] or 1.0
        parts = ", ".join(f"{k.replace('_', ' ')} {100 * v / total:.0f}%" for k, v in spent.items() if v > 0)
        lines.append(f"  {name:<10} SNN {e['snn_pj'] / 1e3:10.2f} nJ  ANN {e['ann_pj'] / 1e3:8.2f} nJ  "
                     f"{e['ratio']:7.3f}x   ({parts})")
    return lines


def _parse_inputs(items: list[str]) -> dict[str, Path] | Path:
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        if sep and not Path(item).exists():
            named[name] = Path(path)
        elif len(items) == 1:
            return Path(item)
        else:
            raise UsageError(f"onnx2snn run: give --input NAME=X.npy for each input of a multi-input model")
    return named


def _run(args) -> int:
    import runtimes
    from .inputs import load_arrays
    if args.device and args.backend != "snntorch":
        raise UsageError(f"onnx2snn run: --device is for --backend snntorch, not {args.backend}")
    if args.output and Path(args.output).suffix not in (".npy", ".npz"):
        raise UsageError(f"onnx2snn run: -o {args.output}: outputs are written as .npy (one output) or .npz "
                         f"(keyed by output name); give -o Y.npy or -o Y.npz")
    options = {"device": args.device} if args.device else {}
    snn = runtimes.load(args.model, backend=args.backend, timesteps=args.timesteps, **options)
    spec = _parse_inputs(args.input)
    if isinstance(spec, Path):
        inputs = load_arrays(spec, list(snn.inputs))
    else:
        inputs = {}
        for name, path in spec.items():
            arrays = load_arrays(path, [name])
            if name not in arrays:
                raise runtimes.InputError(f"{path}: has no array for input '{name}'")
            inputs[name] = arrays[name]
    suffix = ".npy" if len(snn.output_names) == 1 else ".npz"
    output = Path(args.output) if args.output else Path(args.model).with_suffix("").with_suffix(".out" + suffix)
    check_output_path(output, args.model)
    if len(snn.output_names) > 1 and output.suffix != ".npz":
        raise UsageError(f"onnx2snn run: the model has {len(snn.output_names)} outputs; give -o Y.npz")
    if args.report_json:
        check_output_path(args.report_json, args.model)
    grid = _before_run(args, snn, inputs)
    from runtimes.stream import is_delta
    if is_delta(snn.model):
        result = _run_stream(args, snn, inputs)
    elif args.order:
        raise UsageError("onnx2snn run: --order is for delta-coded (streaming) artifacts (convert --coding delta)")
    else:
        progress = _Progress()
        stats = snn.run_with_stats(inputs, progress=lambda done, total: total > 1 and progress(
            "simulating chunks of points", done, total))
        result = stats.outputs
        if args.ann or args.report_json:
            _run_report(args, snn, inputs, stats)
    if args.lowpass:
        result = _lowpass(args, snn, inputs, result, grid)
    if output.suffix == ".npz":
        atomic_write(output, lambda tmp: _save_npz(tmp, result))
    else:
        atomic_write(output, lambda tmp: _save_npy(tmp, result[snn.output_names[0]]))
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in result.items())
    print(f"wrote {output}  ({shapes}; T={snn.timesteps}, backend {args.backend})")
    return EXIT_OK


def _run_report(args, snn, inputs: dict, stats) -> None:
    """``run --ann`` / ``--report-json``: this run measured against the ANN (``evaluate``, on the run's own
    outputs and spike counts), the errors printed, the report written."""
    from .evaluate import evaluate
    evaluation = evaluate(args.model, ann=args.ann, inputs=snn.check_inputs(inputs), timesteps=[snn.timesteps],
                          run=stats)
    report = evaluation.report
    v = report["validation"]
    line = f"SNN vs ANN ({report['ann']}) on {v['points']} points: relative L2 {v['rel_l2_snn_vs_ann']:.3e}"
    if "rel_l2_snn_vs_exact" in v:
        line += f", vs exact {v['rel_l2_snn_vs_exact']:.3e}"
    print(line + f"; {report['spikes_per_sample']:,.1f} spikes and {report['energy']['45nm_fp32']['ratio']:.3g}x "
                 f"the ANN's energy per point (45nm_fp32, compute only)")
    if args.report_json:
        _write_json(args.report_json, report)


def _run_stream(args, snn, inputs: dict) -> dict:
    """``run`` of a delta-coded artifact: the points streamed along ``--order``, outputs in the user's order;
    with ``--ann`` / ``--report-json`` the stream's errors, spikes and energy per point, and its delta-ANN
    baseline (``delta.stream``)."""
    from .delta.order import DEFAULT_ORDER
    from .delta.stream import artifact_report, stream, summary_lines
    streamed = stream(snn, inputs, args.order or DEFAULT_ORDER)
    if args.ann or args.report_json:
        report = artifact_report(args.model, snn, inputs, streamed, ann=args.ann)
        v, e = report["validation"], report["energy"]["45nm_fp32"]
        print(f"SNN vs ANN ({report['ann']}) on {v['points']} points streamed in {report['order']} order: relative "
              f"L2 {v['rel_l2_snn_vs_ann']:.3e}; {report['spikes_per_sample']:,.1f} spikes, "
              f"{report['synops_per_sample']:,.0f} synaptic ops and {e['ratio']:.3g}x the ANN's energy per point "
              f"(45nm_fp32, compute only, start-up included)")
        for line in summary_lines(report):
            print(line)
        if args.report_json:
            _write_json(args.report_json, report)
    return streamed.outputs


def _before_run(args, snn, inputs: dict) -> tuple[int, ...] | None:
    """What ``run`` checks and says before simulating: --grid without --lowpass (usage), the grid of the
    points for --lowpass (returned; refused where they are none), points outside the domain, the time of a
    long run, a cold kernel cache."""
    if args.grid and not args.lowpass:
        raise UsageError("onnx2snn run: --grid describes the points for --lowpass; give --lowpass dct|fft too")
    grid = None
    if args.lowpass:
        from .lowpass import point_grid
        grid = point_grid(snn.model, snn.check_inputs(inputs), args.grid)
    _warn_outside_domain(snn, inputs)
    _say_run_time(snn, inputs)
    _say_compiling()
    return grid


def _warn_outside_domain(snn, inputs: dict) -> None:
    """A warning on stderr when run inputs lie outside the domain the artifact was calibrated on."""
    from runtimes import spec
    from .domain import count_outside, parse_domain
    from .errors import DomainError
    text = snn.metadata.get(spec.META_DOMAIN)
    try:
        outside, total = count_outside(parse_domain(text), inputs) if text else (0, 0)
    except DomainError:                 # a damaged record: nothing to compare against
        return
    if outside:
        print(f"onnx2snn: warning: {outside:,} of {total:,} points lie outside the artifact's domain {text}; "
              f"its thresholds were calibrated there, so outputs outside it may be wrong", file=sys.stderr)


def _say_run_time(snn, inputs: dict) -> None:
    """A progress line with the estimated time of a long run (``resources.run_seconds``: only the time
    grows with T, not the memory)."""
    from runtimes.network import neuron_counts
    from .resources import run_seconds
    points = max((int(np.prod(np.shape(a)[:-1])) for a in inputs.values()), default=1)
    live = neuron_counts(snn.model)[0]
    seconds = run_seconds(points, snn.timesteps, live)
    if seconds > LONG_RUN_SECONDS:
        _progress(f"simulating {points:,} points x T={snn.timesteps:,} x {live:,} neurons: about "
                  f"{seconds:,.0f} s in the numpy runtime")


def _lowpass(args, snn, inputs: dict, result: dict, grid: tuple[int, ...] | None) -> dict:
    from .ann import run_ann
    from .importer import import_model
    from .lowpass import filter_outputs
    from runtimes import spec
    from runtimes.network import metadata
    ann_path = Path(args.ann) if args.ann else None
    source = metadata(snn.model).get(spec.META_SOURCE)
    if ann_path is None and source and (Path(args.model).parent / source).is_file():
        ann_path = Path(args.model).parent / source
    reference = None
    if ann_path is not None:
        ann = run_ann(import_model(ann_path).model, snn.check_inputs(inputs), source=str(ann_path))
        reference = {name: ann[name] for name in result}
    elif args.cutoff is None:
        raise UsageError("onnx2snn run: --cutoff auto needs the original network; give --ann MODEL.onnx "
                         "or a cut-off fraction")
    filtered, info = filter_outputs(snn.model, result, args.lowpass, args.cutoff, reference, grid)
    for name, item in info.items():
        line = f"low-pass {args.lowpass} on {name} (axes {item['axes']}): kept {item['kept_fraction']:.3g} of the modes"
        if "rel_l2_before" in item:
            line += (f"; rel L2 vs ANN {item['rel_l2_before']:.3e} before, {item['rel_l2_after']:.3e} after "
                     f"({ann_path.name})")
        print(line)
    return filtered


def _grid(text: str) -> tuple[int, ...]:
    """``64x32`` → (64, 32)."""
    try:
        shape = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected a grid N1xN2[x...] of positive integers, got {text!r}")
    return shape


def _cutoff(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"cut-off must be auto or a fraction in (0, 1], got {text!r}")
    return value


def _write_json(path: str, data: dict) -> None:
    """A report as indented JSON, written atomically."""
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def _save_npy(tmp: Path, array: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, array)


def _save_npz(tmp: Path, arrays: dict) -> None:
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)


def report_timesteps(own: int, coding: str) -> list[int]:
    """The T sweep of a report: the artifact's own T first, then ``REPORT_TIMESTEPS`` of its coding."""
    return [own] + [T for T in REPORT_TIMESTEPS[coding] if T != own]


def _report_directory(option: str | None, artifact: Path) -> Path | None:
    """``--report`` given as DIR, or bare (then ARTIFACT without .onnx, plus .report, beside it)."""
    if option is None:
        return None
    directory = Path(option) if option else artifact.with_name(artifact.name.removesuffix(".onnx") + ".report")
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"onnx2snn: --report {directory}: exists and is not a directory")
    return directory


def _write_document(directory: Path, evaluation, artifact: Path) -> None:
    from .field import field
    from .report_document import write_report
    shown = field(evaluation.imported, evaluation.network, evaluation.domain, evaluation.report["timesteps"]) \
        if evaluation.domain is not None else None
    if shown is None:
        raise UsageError("onnx2snn: --report needs the artifact's domain (metadata 'onnx2snn.domain') to plot "
                         "the error over it")
    written = write_report(directory, evaluation.report, shown, artifact.name)
    print(f"wrote {written[0]} with {len(written) - 2} figures and {written[1].name}")


def _evaluate(args) -> int:
    from .evaluate import evaluate
    artifact = Path(args.model)
    if args.report_json:
        check_output_path(args.report_json, artifact)
    report_dir = _report_directory(args.report, artifact)
    steps = [T for group in args.timesteps for T in group] if args.timesteps else None
    if report_dir is not None and steps is None:
        from runtimes.loading import load_onnx
        from runtimes.network import artifact_timesteps, if_layers
        from .errors import ModelError
        own = artifact_timesteps(load_onnx(artifact, ModelError), str(artifact))
        codings = {layer["coding"] for layer in if_layers(load_onnx(artifact, ModelError))}
        steps = report_timesteps(own, "phase" if "phase" in codings else "rate")
    evaluation = evaluate(artifact, ann=args.ann, timesteps=steps, points=args.points, inputs=args.input,
                          seed=args.seed, energy_table=args.energy_table,
                          progress=None if args.quiet else _Progress())
    report = evaluation.report
    v = report["validation"]
    print(f"{artifact} against {report['ann']} on {v['points']} points (calibrated for T={report['calibrated_timesteps']}; "
          f"energy compute only, x ANN on the same table):")
    models = list(report["energy"])
    print(f"{'T':>5} {'SNN vs ANN':>11} {'SNN vs exact':>13} {'spikes/sample':>14} "
          + " ".join(f"{m:>10}" for m in models))
    for row in report["sweep"]:
        exact = f"{row['rel_l2_snn_vs_exact']:.3e}" if "rel_l2_snn_vs_exact" in row else "-"
        print(f"{row['timesteps']:>5} {row['rel_l2_snn_vs_ann']:>11.3e} {exact:>13} {row['spikes_per_sample']:>14,.0f} "
              + " ".join(f"{row['energy_ratio'][m]:>9.3g}x" for m in models))
    print(f"{100 * report['spiking_mac_fraction']:.1f}% of the ANN's MACs became synaptic operations; "
          f"{len(report['analog_nodes'])} node(s) stay analog")
    if args.report_json:
        _write_json(args.report_json, report)
    if report_dir is not None:
        _write_document(report_dir, evaluation, artifact)
    return EXIT_OK


def _inspect(args) -> int:
    from runtimes import spec
    from runtimes.loading import load_onnx
    from .errors import ModelError
    from .importer import import_model
    from .structure import analyse
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
    from .energy import ann_budget, load_tables
    from .errors import DomainError
    from .inputs import resolve_domain, validation_inputs
    from .report import tensor_shapes
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


def _verify(args) -> int:
    import runtimes
    from runtimes import spec
    import onnx
    from runtimes.verify import verify
    from .domain import parse_domain, sample_domain
    snn = runtimes.load(args.model, timesteps=args.timesteps)
    text = snn.metadata.get(spec.META_DOMAIN)
    if text is None:
        raise runtimes.ArtifactError(f"{args.model}: no '{spec.META_DOMAIN}' metadata; cannot sample points")
    shapes = {name: [d.dim_value or None for d in value.type.tensor_type.shape.dim]
              for name, value in snn.inputs.items()}
    first = next(iter(snn.inputs.values()))
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(first.type.tensor_type.elem_type))
    points = sample_domain(parse_domain(text), shapes, args.points, np.random.default_rng(args.seed), dtype)
    _say_compiling()
    report = verify(snn.model, points, timesteps=args.timesteps)
    for line in report.lines():
        print(line)
    if args.report_json:
        _write_json(args.report_json, report.to_dict())
    if not report.ok:
        print(f"onnx2snn: error: {args.model}: the runtimes disagree beyond the bound "
              f"(relative L2 {report.rtol:g}, spike counts {report.spike_rtol:g})", file=sys.stderr)
        return EXIT_ERROR
    print(f"all {1 + len(report.backends)} runtime(s) agree on {args.points} domain points")
    return EXIT_OK


def _standard(args) -> int:
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


def _export_nir(args) -> int:
    """The artifact as a NIR graph, run against the artifact's numpy run before it is written
    (``nir_export``, ``nir_check``)."""
    from runtimes.loading import load_onnx
    from .errors import ModelError, OutputPathError
    from .nir_check import check_exact, check_onoff, domain_points
    from .nir_export import export_nir, write_nir
    output = check_output_path(args.output, args.model)
    if output.exists():
        raise OutputPathError(f"{output}: exists; export-nir does not overwrite files, remove it or choose another -o")
    model = load_onnx(Path(args.model), ModelError)
    exported = export_nir(model, args.form, source=args.model)
    if args.input:
        from .inputs import load_arrays
        points = load_arrays(Path(args.input), list(exported.inputs))
    else:
        points = domain_points(model, args.points, args.seed, args.model)
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
    return EXIT_OK


def _train(args) -> int:
    from .training import train_network
    from .training.specification import load_specification
    spec = load_specification(args.spec)
    output = Path(args.output) if args.output else Path(f"{spec.task.name}.snn.onnx")
    check_output_path(output, args.spec)
    if args.report_json:
        check_output_path(args.report_json, args.spec)

    bar = _Progress()

    def progress(record: dict) -> None:
        bar("training (FPE)", int(record["fpe"]), int(args.budget),
            f"iteration {record['iteration']}, loss {record['loss']:.3e}, test {record['test_rel_l2']:.2e}")

    trained = train_network(spec, estimator=args.estimator, budget_fpe=args.budget, timesteps=args.timesteps,
                            seed=args.seed, directions=args.directions, learning_rate=args.learning_rate,
                            surrogate=args.surrogate, sigma=args.sigma, progress=None if args.quiet else progress)
    trained.save(output)
    report = trained.report
    if args.report_json:
        _write_json(args.report_json, report)
    print(f"wrote {output}  ({report['task']}, {report['estimator']}, T={report['timesteps']}, "
          f"{report['parameters']:,} parameters)")
    print(f"test relative L2 vs exact: {report['test_rel_l2']:.3e} (artifact in the numpy runtime: "
          f"{report['artifact_test_rel_l2']:.3e})")
    print(f"budget: {report['fpe_spent']:,.0f} forward-pass equivalents in {report['iterations']:,} steps, "
          f"{report['seconds']:.1f} s; {report['spikes_per_sample']:,.0f} spikes per test sample")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
