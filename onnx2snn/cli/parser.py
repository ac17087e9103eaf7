"""The argument parser of ``onnx2snn``: every subcommand's options and their value types.

Only argparse and numpy-free helpers here: ``onnx2snn --help`` must not import the heavy modules."""

from __future__ import annotations

import argparse

from .. import __version__
from .common import UsageError


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
    convert.add_argument("--gates", choices=["auto", "static", "spiking"], default=None,
                         help="layers computed from the inputs alone that multiply a spiking signal (the modified "
                              "MLP's U, V): static = computed once per point, spiking = spiking layers decoded "
                              "before the products; auto (default) converts both and keeps the one that meets the "
                              "accuracy at less energy (--pieces auto; other codes keep them static)")
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
    train.add_argument("--estimator", default="rate-jacobian",
                       choices=["bptt", "rfg-global", "rfg-layer", "weight-fd", "activity", "activity-rate",
                                "activity-layer", "activity-rate-layer", "rate-jacobian"],
                       help="gradient estimator: rate-jacobian (default; no draws: every layer's forward Jacobian "
                            "of the rate network, accumulated once per pass), bptt (the baseline), the paper's "
                            "forward gradients rfg-global and rfg-layer, weight-fd (finite differences), "
                            "activity / activity-rate (perturbed currents per step / per point; -layer: one "
                            "tangent channel per layer)")
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
    export_nir.add_argument("--sinabs-python", metavar="PYTHON", help="--form onoff: also run the export through "
                            "sinabs with this interpreter (an environment with sinabs, which pins nir 1.0.4) and "
                            "print its error")

    for p in (convert, run, evaluate, inspect, verify, standard, train, export_nir):
        p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    return parser
