"""``onnx2snn run``: an artifact on the user's inputs (any runtime), delta artifacts streamed along a
path, optional low-pass filtering along a grid, outputs written as .npy/.npz, errors against the ANN."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..saving import atomic_write, check_output_path
from .common import EXIT_OK, Progress, UsageError, progress_line, save_npy, save_npz, say_compiling, write_json

LONG_RUN_SECONDS = 10.0         # runs estimated to take longer say so first


def _parse_inputs(items: list[str]) -> dict[str, Path] | Path:
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        if sep and not Path(item).exists():
            named[name] = Path(path)
        elif len(items) == 1:
            return Path(item)
        else:
            raise UsageError("onnx2snn run: give --input NAME=X.npy for each input of a multi-input model")
    return named


def run_command(args) -> int:
    import runtimes
    from ..inputs import load_arrays
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
        progress = Progress()
        stats = snn.run_with_stats(inputs, progress=lambda done, total: total > 1 and progress(
            "simulating chunks of points", done, total))
        result = stats.outputs
        if args.ann or args.report_json:
            _run_report(args, snn, inputs, stats)
    if args.lowpass:
        result = _lowpass(args, snn, inputs, result, grid)
    if output.suffix == ".npz":
        atomic_write(output, lambda tmp: save_npz(tmp, result))
    else:
        atomic_write(output, lambda tmp: save_npy(tmp, result[snn.output_names[0]]))
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in result.items())
    print(f"wrote {output}  ({shapes}; T={snn.timesteps}, backend {args.backend})")
    return EXIT_OK


def _run_report(args, snn, inputs: dict, stats) -> None:
    """``run --ann`` / ``--report-json``: this run measured against the ANN (``evaluate``, on the run's own
    outputs and spike counts), the errors printed, the report written."""
    from ..evaluate import evaluate
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
        write_json(args.report_json, report)


def _run_stream(args, snn, inputs: dict) -> dict:
    """``run`` of a delta-coded artifact: the points streamed along ``--order``, outputs in the user's order;
    with ``--ann`` / ``--report-json`` the stream's errors, spikes and energy per point, and its delta-ANN
    baseline (``delta.stream``)."""
    from ..delta.order import DEFAULT_ORDER
    from ..delta.stream import artifact_report, stream, summary_lines
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
            write_json(args.report_json, report)
    return streamed.outputs


def _before_run(args, snn, inputs: dict) -> tuple[int, ...] | None:
    """What ``run`` checks and says before simulating: --grid without --lowpass (usage), the grid of the
    points for --lowpass (returned; refused where they are none), points outside the domain, the time of a
    long run, a cold kernel cache."""
    if args.grid and not args.lowpass:
        raise UsageError("onnx2snn run: --grid describes the points for --lowpass; give --lowpass dct|fft too")
    grid = None
    if args.lowpass:
        from ..lowpass import point_grid
        grid = point_grid(snn.model, snn.check_inputs(inputs), args.grid)
    _warn_outside_domain(snn, inputs)
    _say_run_time(snn, inputs)
    say_compiling()
    return grid


def _warn_outside_domain(snn, inputs: dict) -> None:
    """A warning on stderr when run inputs lie outside the domain the artifact was calibrated on."""
    from runtimes import spec
    from ..domain import count_outside, parse_domain
    from ..errors import DomainError
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
    from ..resources import run_seconds
    points = max((int(np.prod(np.shape(a)[:-1])) for a in inputs.values()), default=1)
    live = neuron_counts(snn.model)[0]
    seconds = run_seconds(points, snn.timesteps, live)
    if seconds > LONG_RUN_SECONDS:
        progress_line(f"simulating {points:,} points x T={snn.timesteps:,} x {live:,} neurons: about "
                  f"{seconds:,.0f} s in the numpy runtime")


def _lowpass(args, snn, inputs: dict, result: dict, grid: tuple[int, ...] | None) -> dict:
    from ..ann import run_ann
    from ..importer import import_model
    from ..lowpass import filter_outputs
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
