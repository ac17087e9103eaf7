"""Forward-only fine-tuning ("--calibration forward"): the converted SNN trained against its ANN with a
forward-mode gradient estimator, the on-chip-learnable alternative to ``finetune``'s back-propagation.

The layer-wise calibration's network (one neuron per unit, a plain chain) is read as a trainable spiking
MLP (``training.artifact.mlp_from_artifact``: IF biases and decodes folded into the affine maps), then
trained on the calibration points to minimise

    L(w) = mean_x ‖y_SNN(x; w) - y_ANN(x)‖² / mean_x ‖y_ANN(x)‖²

with the ``activity`` estimator (perturbed currents, forward mode; ``training.estimators``) through the
straight-through surrogate (the rate code's rule, ``training.surrogate``) on minibatches of
``BATCH_ROWS`` points for ``options.forward_budget`` forward-pass equivalents.  A fifth of the
calibration points is held out: the trained weights are kept only if their error there is lower than
the starting network's.  Thresholds, initial potentials and the neuron stay as calibrated; the trained
weights are written back with β = 0 and the identity decode (w = 1, c = 0).

Measured on the shipped Poisson network (4×100, T = 32, one neuron per unit, from ``advanced`` at 3.31e-2
held-out error; batch 64, 1,500 FPE unless noted): no forward-only setting improved it within the budgets
tried -- ``activity`` 3.6e-2 / 3.7e-2 / 5.5e-2 at η = 1e-4 / 3e-5 / 1e-3 (Gaussian surrogate), 3.4e-2 /
5.5e-2 at η = 1e-4 / 1e-3 (straight-through); ``activity-rate`` 4.0e-2 at η = 1e-4 after 3,000 of 6,000
FPE, 4.7e-2 / 9.0e-2 at 3e-4 / 1e-3 -- while BPTT through the same surrogates reached 3.2e-2 (η = 1e-4)
and 2.9e-2 (η = 1e-3, straight-through) and ``finetune`` (tens of thousands of rate-model steps) 4.7e-3.
A single estimate's cosine to the true gradient falls with the number of perturbed units × T over the
batch (0.03 on a 4×64 network at T = 32, ``benchmarks/results/forward_gradient.md``), so the 30,000
weights of a converted network need far more steps than a calibration can afford; the guard keeps the
layer-wise result then.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx

from ..errors import CalibrationError, Onnx2SnnError
from ..progress import Progress
from .layer import ConvertedLayer
from .options import ConversionOptions

BATCH_ROWS = 256
HELD_OUT = 0.2
LEARNING_RATE = 1e-4      # Adam; the calibrated weights are a good start, so steps stay small (see the note below)
ESTIMATOR = "activity"   # the forward-only estimator of lowest variance (benchmarks/results/forward_gradient.md)
SURROGATE, SURROGATE_WIDTH = "straight", 0.5     # surrogate.py; σ is relative to each neuron's threshold


def forward_finetune(artifact: onnx.ModelProto, calibration, feeds: dict[str, np.ndarray],
                     ann_outputs: dict[str, np.ndarray], options: ConversionOptions,
                     progress: Progress):
    """The calibration with forward-trained weights (or unchanged if held-out error did not improve);
    ``ann_outputs``: the ANN's tensors at the calibration points, the chain's output among them;
    ``progress``: ``onnx2snn.progress``."""
    from ..training.artifact import mlp_from_artifact
    from ..training.surrogate import Surrogate
    from ..training.tasks import Task, as_tensor
    from ..training.trainer import TrainConfig, build_model, test_error, train
    try:
        params, binding = mlp_from_artifact(artifact)
    except Onnx2SnnError as e:
        raise CalibrationError(f"calibration 'forward' needs a plain chain with one neuron per unit: {e}") from None
    x = np.asarray(feeds[binding["input"]], np.float64)
    y = np.asarray(ann_outputs[binding["output"]], np.float64).reshape(len(x), -1)
    spiking_readout = params.layers[-1].spiking      # its output neurons fix the scale: targets stay as they are
    scale = 1.0 if spiking_readout else float(np.sqrt(np.mean(y ** 2))) or 1.0
    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(x))
    held = order[:max(1, int(HELD_OUT * len(x)))]
    fit = order[len(held):]
    widths = [params.n_inputs] + [l.width for l in params.layers]
    task = Task("calibration", "mlp", widths, (as_tensor(x[fit]), as_tensor(y[fit] / scale)),
                (as_tensor(x[held]), as_tensor(y[held] / scale)), SURROGATE_WIDTH,
                batch_rows=min(BATCH_ROWS, len(fit)))
    surrogate = Surrogate(SURROGATE, SURROGATE_WIDTH)
    for layer in params.layers:      # targets are divided by their RMS: so is the readout
        if not layer.spiking:
            layer.weight, layer.bias = layer.weight / scale, layer.bias / scale
    before = test_error(task, build_model(task, params, surrogate))
    config = TrainConfig(ESTIMATOR, options.forward_budget, learning_rate=LEARNING_RATE, surrogate=surrogate,
                         seed=options.seed, record_every=max(1, int(options.forward_budget // 40)))
    result = train(task, params, config, lambda r: progress(
        "forward fine-tuning (FPE)", int(r["fpe"]), int(options.forward_budget),
        f"held-out error {r['test_rel_l2']:.2e} (from {before:.2e})"))
    if not result.test_rel_l2 < before:
        return calibration
    trained = result.model.to_params()
    return _write_back(calibration, trained, scale)


def _write_back(calibration, trained, scale: float):
    layers = []
    for old, new in zip(calibration.layers, trained.layers):
        dtype = old.weight.dtype
        n, k = old.neurons.shape
        layers.append(ConvertedLayer(new.weight.astype(dtype), new.bias.astype(dtype),
                                     replace(old.neurons, bias=np.zeros((n, k), dtype)),
                                     np.ones((n, k), dtype), np.zeros(n, dtype)))
    name, readout = next(iter(calibration.readouts.items()))
    last = trained.layers[-1]
    weight, bias = (last.weight * scale, last.bias * scale) if not last.spiking else (last.weight, last.bias)
    readouts = {name: replace(readout, weight=weight.astype(readout.weight.dtype),
                              bias=bias.astype(readout.bias.dtype))}
    return replace(calibration, layers=layers, readouts=readouts)
