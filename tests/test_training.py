"""Forward-gradient training: the tangent rule against BPTT, unbiasedness of the estimators, training,
and the trained artifact against the torch simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from onnx2snn.cli import main
from onnx2snn.training import train_network
from onnx2snn.training.estimators import ESTIMATORS, Objective, directional, estimate, layer_directional
from onnx2snn.training.network import SpikingMLP, initial_mlp
from onnx2snn.training.parameters import SpikingDeepONetParams
from onnx2snn.training.product import SpikingProduct
from onnx2snn.training.specification import Specification, SpecificationError, load_specification
from onnx2snn.training.surrogate import Surrogate
from onnx2snn.training.tasks import Task, load_task

torch.set_num_threads(1)


def _mlp(widths, timesteps, *, readout="analog", leak=1.0, fire_fraction=1.0, gain=3.0, seed=0):
    params = initial_mlp(widths, timesteps, readout=readout, leak=leak, seed=seed)
    params.fire_fraction = fire_fraction
    for layer in params.layers:           # larger weights: every layer fires
        layer.weight = layer.weight * gain
    return params


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def _line(n):
    x = torch.linspace(-1, 1, n, dtype=torch.float64)[:, None]
    return x, torch.sin(np.pi * x)


NEURONS = [dict(), dict(leak=0.8), dict(readout="rate"), dict(fire_fraction=0.5), dict(leak=0.7, readout="rate")]


@pytest.mark.parametrize("surrogate", ["gaussian", "stein"])
@pytest.mark.parametrize("options", NEURONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "if")
def test_tangent_equals_bptt_directional_derivative(options, surrogate):
    model = SpikingMLP(_mlp([1, 12, 12, 1], 16, **options), Surrogate(surrogate, 0.5, samples=4))
    objective = Objective(model, *_line(40))
    bptt = estimate("bptt", objective, rng=torch.Generator().manual_seed(0), surrogate_seed=5)
    rng = torch.Generator().manual_seed(1)
    for _ in range(3):
        u = [torch.randn(p.shape, dtype=p.dtype, generator=rng) for p in model.parameters]
        loss, d = directional(objective, u, seed=5)
        expected = float(_flat(bptt.gradient) @ _flat(u))
        assert abs(d - expected) <= 1e-10 * abs(expected)
        assert loss == pytest.approx(bptt.loss, rel=1e-14)
        assert abs(expected) > 1e-3          # the surrogate carries a gradient at all


def _product_objective(surrogate):
    branch, trunk = _mlp([3, 8, 8, 4], 12, seed=1), _mlp([1, 8, 4], 12, readout="rate", seed=2)
    model = SpikingProduct(SpikingDeepONetParams(branch, trunk), Surrogate(surrogate, 0.3, samples=4))
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, dtype=torch.float64, generator=g)
    c = torch.linspace(-1, 1, 7, dtype=torch.float64)[:, None]
    return Objective(model, (a, c), torch.randn(5, 7, dtype=torch.float64, generator=g))


def test_tangent_equals_bptt_for_a_product_network():
    objective = _product_objective("gaussian")
    g = torch.Generator().manual_seed(3)
    bptt = estimate("bptt", objective, rng=g)
    u = [torch.randn(p.shape, dtype=p.dtype, generator=g) for p in objective.model.parameters]
    _, d = directional(objective, u)
    expected = float(_flat(bptt.gradient) @ _flat(u))
    assert abs(d - expected) <= 1e-10 * abs(expected)


def _layer_directions(model, per_layer, generator):
    """``per_layer`` random directions (Ẇ [k, ...], ḃ [k, ...]) for every layer."""
    return [tuple(torch.randn((per_layer,) + model.parameters[i].shape, dtype=torch.float64, generator=generator)
                  for i in s) for s in model.layer_slices()]


def _alone(model, directions, layer, k):
    """Direction k of ``layer`` as a full per-parameter direction list for ``directional``."""
    u = [None] * len(model.parameters)
    for i, v in zip(model.layer_slices()[layer], directions[layer]):
        u[i] = v[k]
    return u


@pytest.mark.parametrize("options", NEURONS + ["product"], ids=lambda o: o if isinstance(o, str) else (
    ",".join(f"{k}={v}" for k, v in o.items()) or "if"))
def test_batched_layer_tangents_equal_one_forward_mode_pass_per_layer(options):
    """rfg-layer's one pass with all layers' directions side by side gives, channel by channel, the
    derivative of a separate forward-mode (torch.autograd.forward_ad) pass per layer and direction."""
    if options == "product":
        objective = _product_objective("gaussian")
    else:
        objective = Objective(SpikingMLP(_mlp([1, 12, 12, 1], 16, **options), Surrogate("gaussian", 0.5)), *_line(40))
    model = objective.model
    directions = _layer_directions(model, 2, torch.Generator().manual_seed(1))
    loss, d = layer_directional(objective, directions, seed=5)
    passes = [directional(objective, _alone(model, directions, l, k), seed=5)
              for l in range(len(directions)) for k in range(2)]
    expected = torch.tensor([p[1] for p in passes], dtype=torch.float64)
    assert d.shape == expected.shape and loss == pytest.approx(passes[0][0], rel=1e-14)
    assert float((d - expected).abs().max()) <= 1e-12 * float(expected.abs().max())
    assert float(expected.abs().min()) > 1e-6            # every layer's channel carries a derivative


@pytest.mark.parametrize("surrogate", ["gaussian", "stein"])
def test_batched_layer_tangents_equal_bptt_layer_by_layer(surrogate):
    """Each channel's derivative is BPTT's layer gradient along that direction (a Stein surrogate: the
    same noise draw as BPTT with the same seed), for a leaky IF network and a product network."""
    leaky = Objective(SpikingMLP(_mlp([1, 12, 12, 1], 16, leak=0.8), Surrogate(surrogate, 0.5, samples=4)),
                      *_line(40))
    for objective in (leaky, _product_objective(surrogate)):
        model = objective.model
        bptt = estimate("bptt", objective, rng=torch.Generator(), surrogate_seed=5)
        directions = _layer_directions(model, 2, torch.Generator().manual_seed(1))
        _, d = layer_directional(objective, directions, seed=5)
        expected = torch.tensor([sum(float((bptt.gradient[i] * v[k]).sum()) for i, v in zip(s, directions[l]))
                                 for l, s in enumerate(model.layer_slices()) for k in range(2)], dtype=torch.float64)
        assert torch.all((d - expected).abs() <= 1e-10 * expected.abs())


def _mean_estimate(name, objective, samples, seed=0):
    rng = torch.Generator().manual_seed(seed)
    draws = torch.stack([_flat(estimate(name, objective, rng=rng).gradient) for _ in range(samples)])
    return draws.mean(0), draws.var(0).sum() / samples


@pytest.mark.parametrize("name", ["rfg-global", "rfg-layer", "activity", "activity-layer"])
def test_forward_gradient_estimates_are_unbiased(name):
    """‖mean of N estimates - BPTT‖² is about the trace of the mean's covariance (ratio ~1, χ²-like);
    a biased estimator (a sign or scale error, a dropped term) gives a ratio growing with N."""
    model = SpikingMLP(_mlp([1, 5, 5, 1], 8), Surrogate("gaussian", 0.5))
    objective = Objective(model, *_line(24))
    exact = _flat(estimate("bptt", objective, rng=torch.Generator()).gradient)
    mean, variance_of_mean = _mean_estimate(name, objective, 600)
    ratio = float((mean - exact).pow(2).sum() / variance_of_mean)
    assert ratio < 3.0
    # and the mean does point along the gradient
    assert float(mean @ exact / mean.norm() / exact.norm()) > 0.9
    # the test can fail: an estimator off by a factor of two would be outside the bound
    assert float((2 * mean - exact).pow(2).sum() / variance_of_mean) > 3.0


def test_rate_activity_in_one_pass_equals_the_replay_at_one_step():
    """At T = 1 a per-step draw is a per-rate draw: activity-rate's sums of the inputs, taken in its one
    forward pass, give what activity's replay pass accumulates, from the same draws."""
    objective = Objective(SpikingMLP(_mlp([2, 6, 6, 3], 1), Surrogate("gaussian", 0.5)), *_line(24))
    objective.inputs = torch.cat([objective.inputs, objective.inputs ** 2], 1)
    objective.target = objective.target.repeat(1, 3)
    replay, rate = (estimate(n, objective, 2, rng=torch.Generator().manual_seed(4)) for n in ("activity", "activity-rate"))
    assert float((_flat(rate.gradient) - _flat(replay.gradient)).abs().max()) <= 1e-13 * float(_flat(replay.gradient).abs().max())
    assert rate.cost_fpe < replay.cost_fpe


def test_rate_activity_is_unbiased_where_the_input_is_constant_in_time():
    """activity-rate's first layer (input x every step) and analog readout (input m̄ once) average to
    BPTT's gradients (the χ² ratio of the unbiasedness test, on those layers' parameters)."""
    model = SpikingMLP(_mlp([1, 5, 5, 1], 8), Surrogate("gaussian", 0.5))
    objective = Objective(model, *_line(24))
    exact = estimate("bptt", objective, rng=torch.Generator()).gradient
    rng = torch.Generator().manual_seed(0)
    draws = [estimate("activity-rate", objective, rng=rng).gradient for _ in range(600)]
    for i in (0, 1, 4, 5):                              # W_1, b_1, W_3, b_3
        stack = torch.stack([d[i].flatten() for d in draws])
        mean, variance_of_mean = stack.mean(0), stack.var(0).sum() / len(draws)
        assert float((mean - exact[i].flatten()).pow(2).sum() / variance_of_mean) < 3.0
        assert float((2 * mean - exact[i].flatten()).pow(2).sum() / variance_of_mean) > 3.0


def test_weight_perturbation_follows_the_loss_without_a_surrogate():
    model = SpikingMLP(_mlp([1, 5, 5, 1], 8), Surrogate("gaussian", 0.5))
    objective = Objective(model, *_line(24))
    exact = _flat(estimate("bptt", objective, rng=torch.Generator()).gradient)
    mean, _ = _mean_estimate("weight-fd", objective, 600)
    assert float(mean @ exact / mean.norm() / exact.norm()) > 0.5


def test_costs_in_forward_pass_equivalents():
    model = SpikingMLP(_mlp([1, 6, 6, 1], 4), Surrogate())
    objective = Objective(model, *_line(8))
    rng = torch.Generator().manual_seed(0)
    costs = {n: estimate(n, objective, 2, rng=rng).cost_fpe for n in ESTIMATORS}
    assert costs["bptt"] == 3.0 and costs["weight-fd"] == 3.0        # forward + backward; K + 1 forwards
    assert 2 * 2 < costs["rfg-global"] <= 2 * 3                       # K × (primal + tangent)
    # one primal; layer l (its share f_l of a forward pass's multiply-adds: 6·6 per step for the hidden
    # layer, 6 once for the first and the readout) carries l·K channels in (W·ḣ) and adds its own K (Ẇ·h)
    f = np.array([6 / 4, 36, 6 / 4]) / 39
    assert costs["rfg-layer"] == pytest.approx(1 + 2 * (f[0] + 2 * f[1] + 3 * f[2]), rel=1e-12)
    assert costs["activity"] == pytest.approx(2 * (4 - f[0]), rel=1e-12)      # forward-mode pass and replay
    # no replay: the forward-mode pass and one hᵀ·(d ⊙ ξ) per layer (48 weights once against 39 per step)
    assert costs["activity-rate"] == pytest.approx(2 * (2 - f[0] + 48 / (4 * 39)), rel=1e-12)
    # layer-separated channels: a channel opened at layer l costs W·ḣ on the layers after it and one
    # update per unit and step on its own layer and those after (widths 6, 6, 1): 36 + 1.5 + 13, 1.5 + 7, 1
    carried = (36 + 1.5 + 13 + 1.5 + 7 + 1) / 39
    assert costs["activity-layer"] == pytest.approx(2 * (3 + carried), rel=1e-12)
    # the rate estimate gives the second layer its 6 exact channels, carried by the readout (1.5 + 1 each)
    # and updated on their own units as one diagonal state (6): (6·2.5 + 6)/39 FPE <= EXACT_COST
    exact = (36 + 1.5 + 13 + 6 * 2.5 + 6 + 1) / 39
    assert costs["activity-rate-layer"] == pytest.approx(2 * (1 + exact + 48 / (4 * 39)), rel=1e-12)
    # no draws, K does not apply: the primal, one gain update per unit and step (13 units), and once per
    # pass each layer's Jacobian through the layers after it (W·J, diag(D)·J) and its contraction with
    # ∂L/∂y: 6·((36 + 6) + (6 + 1) + 1) + 6·((6 + 1) + 1) + 1·1, and g_W (48)
    assert costs["rate-jacobian"] == pytest.approx(1 + 13 / 39 + (300 + 48 + 1 + 48) / (4 * 39), rel=1e-12)


def _tiny_task():
    x, y = _line(64)
    xt, yt = _line(257)
    return Task("tiny-sine", "mlp", [1, 16, 16, 1], (x, y), (xt, yt), 0.5)


@pytest.mark.parametrize("estimator, budget", [("bptt", 450), ("activity", 900)])
def test_training_lowers_the_test_error(estimator, budget):
    task = _tiny_task()
    trained = train_network(Specification(task), estimator=estimator, budget_fpe=budget, timesteps=8,
                            learning_rate=1e-2)
    curve = trained.report["curve"]
    initial = train_network(Specification(task), estimator="bptt", budget_fpe=1, timesteps=8,
                            learning_rate=1e-12).report["test_rel_l2"]
    assert trained.report["test_rel_l2"] < 0.5 * initial
    assert trained.report["fpe_spent"] >= budget and curve[-1]["fpe"] == trained.report["fpe_spent"]
    # the artifact, run by the numpy runtime, is the trained network
    assert trained.report["artifact_test_rel_l2"] == pytest.approx(trained.report["test_rel_l2"], rel=1e-9)


def test_task_errors_are_relative_l2_against_the_exact_solution():
    """x² and the separable problem: one relative L2 over all test points (the separable solution vanishes
    on the rows x = ±1, where a per-row error divides by ~1e-16); the DeepONet: the mean over test
    functions of each one's relative L2 (numpy, from the task's exact data)."""
    for name in ("x2", "separable-2d", "deeponet-poisson"):
        task = load_task(name)
        exact = task.test[1].numpy()
        offset = np.cos(np.arange(exact.size)).reshape(exact.shape) * 1e-2
        if name == "deeponet-poisson":
            expected = np.mean(np.linalg.norm(offset, axis=1) / np.linalg.norm(exact, axis=1))
        else:
            expected = np.linalg.norm(offset) / np.linalg.norm(exact)
        assert task.test_error(torch.from_numpy(exact + offset)) == pytest.approx(expected, rel=1e-12)
        assert expected < 0.1


def test_leaky_product_artifact_equals_the_torch_network():
    task = load_task("separable-2d")
    task.widths = ([1, 8, 4], [1, 8, 4])
    trained = train_network(Specification(task, leak=0.9), estimator="rfg-layer", budget_fpe=20, timesteps=6)
    assert trained.report["artifact_test_rel_l2"] == pytest.approx(trained.report["test_rel_l2"], rel=1e-9)


def test_cli_train_writes_artifact_and_report(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    x = np.linspace(-1, 1, 50)
    np.savez(tmp_path / "points.npz", x_train=x, y_train=np.abs(x), x_test=x[::3], y_test=np.abs(x[::3]))
    spec.write_text(json.dumps({"data": "points.npz", "widths": [8, 8]}))
    out, report = tmp_path / "net.snn.onnx", tmp_path / "r.json"
    assert main(["train", str(spec), "--estimator", "activity", "--budget", "40", "-T", "4", "-o", str(out),
                 "--report-json", str(report), "-q"]) == 0
    data = json.loads(report.read_text())
    for key in ("test_rel_l2", "estimator", "budget_fpe", "timesteps", "seed", "curve", "spikes_per_sample"):
        assert key in data
    assert data["estimator"] == "activity" and data["timesteps"] == 4 and out.is_file()
    assert data["spikes_per_sample"] > 0 and all(0 < r < 1 for r in data["spike_rate"].values())
    assert "test relative L2" in capsys.readouterr().out
    assert main(["verify", str(out), "--points", "64"]) == 0


@pytest.mark.parametrize("content, message", [
    ("not json", "not a JSON specification"),
    ('{"task": "x2", "data": "a.npz"}', "exactly one of"),
    ('{"task": "x3"}', "unknown task"),
    ('{"task": "x2", "depth": 3}', "unknown key"),
    ('{"data": "missing.npz"}', "needs arrays"),
    ('{"task": "x2", "leak": 1.5}', "leak"),
])
def test_bad_specifications_are_refused_in_one_line(tmp_path, content, message):
    spec = tmp_path / "s.json"
    spec.write_text(content)
    with pytest.raises(SpecificationError, match=message):
        load_specification(str(spec))


def test_cli_refuses_an_unknown_task(capsys):
    assert main(["train", "no-such-task"]) == 1
    err = capsys.readouterr().err
    assert "neither a shipped task" in err and len(err.strip().splitlines()) == 1


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def test_forward_calibration_trains_the_converted_chain():
    """--calibration forward (finetune's fit, forward-only gradients) lowers the layer-wise calibration's
    error against the ANN on fresh points; the options it clashes with are refused naming it."""
    import onnx2snn
    from onnx2snn.errors import CalibrationError
    common = dict(pieces=1, samples=512, timesteps=8, validation_points=512, finetune_iterations=40)
    start = onnx2snn.convert(FIXTURES / "torch_float64.onnx", calibration="advanced", **common)
    result = onnx2snn.convert(FIXTURES / "torch_float64.onnx", calibration="forward", **common)
    assert result.report["calibration"] == "advanced+forward"
    before, after = (r.report["validation"]["rel_l2_snn_vs_ann"] for r in (start, result))
    assert after < 0.7 * before, (before, after)
    for bad in (dict(pieces=4, calibration="forward"), dict(pieces=1, calibration="forward+advanced"),
                dict(pieces=1, calibration="finetune+forward")):
        with pytest.raises(CalibrationError, match="forward"):
            onnx2snn.convert(FIXTURES / "torch_float64.onnx", samples=64, validate=False, **bad)


def test_forward_gradient_estimate_is_unbiased():
    """The node-perturbation estimate of ∂L/∂z (finetune._perturbed_currents) averages to the back-propagated
    gradient: a 2-layer chain with a readout, 4,000 draws, against the exact δz."""
    from onnx2snn.calibration.finetune import _Pass, _perturbed_currents
    from onnx2snn.calibration.wiring import FitInput, FitWiring
    from onnx2snn.links import Link
    rng = np.random.default_rng(0)
    B, m, n1, n2 = 3, 2, 5, 4
    weights = [rng.standard_normal((m, n1)), rng.standard_normal((n1, n2)), rng.standard_normal((n2, 1))]
    slopes = [rng.random((B, n1)), rng.random((B, n2))]
    means = [np.zeros((B, n1)), np.zeros((B, n2))]
    dy = rng.standard_normal((B, 1))                                     # ∂L/∂y at the readout
    exact_2 = (dy @ weights[2].T) * slopes[1]
    exact_1 = (exact_2 @ weights[1].T) * slopes[0]
    chain = FitWiring([FitInput(static=np.zeros((B, m))), FitInput(link=Link("h1", [0], ["h1"]))],
                      [FitInput(link=Link("h2", [1], ["h2"]))], [], B)
    state = _Pass([], means, slopes, [], [np.zeros((B, 1))])
    draws = [_perturbed_currents(state, weights, chain, [dy], np.arange(B), rng)[0] for _ in range(4000)]
    for l, exact in enumerate((exact_1, exact_2)):
        mean = np.mean([d[l] for d in draws], axis=0)
        spread = np.std([d[l] for d in draws], axis=0) / np.sqrt(len(draws))
        assert np.all(np.abs(mean - exact) <= 5 * spread + 1e-12), (mean, exact)


def test_layer_separated_activity_has_lower_variance():
    """Channel l carries layer l's perturbation alone, so layer l's estimate loses the other layers'
    noise: the summed variance of the estimate falls (by about the layer count on this 1-6-6-6-1 net),
    while both stay unbiased (``test_forward_gradient_estimates_are_unbiased``)."""
    objective = Objective(SpikingMLP(_mlp([1, 6, 6, 6, 1], 8), Surrogate("gaussian", 0.5)), *_line(24))
    _, shared = _mean_estimate("activity", objective, 300)
    _, separate = _mean_estimate("activity-layer", objective, 300)
    assert float(separate) < 0.6 * float(shared)


def test_the_cli_offers_every_estimator():
    from onnx2snn.cli.parser import build_parser
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    estimator = next(a for a in train._actions if a.dest == "estimator")
    assert list(estimator.choices) == list(ESTIMATORS)


def _rate_gradient(model: SpikingMLP, x: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
    """An independent reference for the rate estimators' expectation (signed IF, analog readout): by
    autograd, δ_l = ∂L/∂e_l for a current offset e_l [B, n_l] constant in time, and
    g_{W_l} = h̄_{l-1}ᵀ·δ_l, g_{b_l} = Σ_b δ_l with h̄ the layer's mean input."""
    from onnx2snn.training.surrogate import spike
    p, L, B = model.parameters, model.n_layers, x.shape[0]
    offsets = [torch.zeros(B, p[2 * l].shape[1], dtype=x.dtype, requires_grad=True) for l in range(L)]
    means = [torch.zeros(B, p[2 * l].shape[0], dtype=x.dtype) for l in range(L)]
    state = [v0.expand(B, -1).clone() for _, _, v0 in model._neurons]
    total = 0
    for _ in range(model.timesteps):
        h = x
        for l in range(L - 1):
            means[l] = means[l] + h.detach() / model.timesteps
            u = state[l] + h @ p[2 * l] + p[2 * l + 1] + offsets[l]
            theta_pos, theta_neg, _ = model._neurons[l]
            h = spike(u, theta_pos, theta_neg, model.fire_fraction, model.surrogate, None)
            state[l] = u - h
        total = total + h
    means[-1] = (total / model.timesteps).detach()
    loss = ((total / model.timesteps @ p[-2] + p[-1] + offsets[-1] - target) ** 2).mean()
    deltas = torch.autograd.grad(loss, offsets)
    return [g for m, d in zip(means, deltas) for g in (m.T @ d, d.sum(0))]


def test_exact_layers_give_the_rate_gradient_in_every_draw():
    """A layer whose n_l identity channels are cheap (all but the first here: 8 channels through 8-2-1
    cost 2.0 FPE) gets its exact forward Jacobian: every draw equals the autograd reference there; the
    first layer (one Rademacher channel through every layer after it) averages to it."""
    from onnx2snn.training.estimators import _exact_layers
    model = SpikingMLP(_mlp([1, 8, 8, 2, 1], 8), Surrogate("gaussian", 0.5))
    assert _exact_layers(model) == {1, 2, 3}
    objective = Objective(model, *_line(24))
    reference = _rate_gradient(model, *_line(24))
    rng = torch.Generator().manual_seed(0)
    draws = [estimate("activity-rate-layer", objective, rng=rng).gradient for _ in range(400)]
    for i in range(2, 8):                               # W, b of the 8 → 8, 8 → 2 layers and the readout
        assert max(float((d[i] - reference[i]).abs().max()) for d in draws[:5]) <= 1e-12 * float(reference[i].abs().max())
    for i in (0, 1):                                    # 1 → 8: a Rademacher channel, unbiased here
        stack = torch.stack([d[i].flatten() for d in draws])
        mean, variance_of_mean = stack.mean(0), stack.var(0).sum() / len(draws)
        assert float((mean - reference[i].flatten()).pow(2).sum() / variance_of_mean) < 3.0
        assert float(variance_of_mean) > 0


def _gains_by_autograd(model: SpikingMLP, x: torch.Tensor) -> list[torch.Tensor]:
    """D_l [B, n_l] = ∂/∂c of (1/T) Σ_t h_l(t) for a constant offset c of layer l's currents, one layer at
    a time, by autograd through the surrogate dynamics (units of a layer do not interact: the gradient of
    the sum is the diagonal)."""
    from onnx2snn.training.surrogate import spike
    p, gains = model.parameters, []
    for target_layer in range(len(model._neurons)):
        offset = torch.zeros(x.shape[0], p[2 * target_layer].shape[1], dtype=x.dtype, requires_grad=True)
        state = [v0.expand(x.shape[0], -1).clone() for _, _, v0 in model._neurons]
        total = 0
        for _ in range(model.timesteps):
            h = x
            for l in range(target_layer + 1):
                u = model.leak * state[l] + h @ p[2 * l] + p[2 * l + 1] + (offset if l == target_layer else 0)
                theta_pos, theta_neg, _ = model._neurons[l]
                h = spike(u, theta_pos, theta_neg, model.fire_fraction, model.surrogate, None)
                state[l] = u - h
            total = total + h
        gains.append(torch.autograd.grad((total / model.timesteps).sum(), offset)[0])
    return gains


def _linearised(model: SpikingMLP, rate, offsets: list[torch.Tensor]) -> torch.Tensor:
    """y + J·c of the rate network (``RatePass``) for current offsets c_l, written in reverse-mode-ready
    form: δz_l = δm_{l-1}·W_l + c_l, δm_l = D_l ⊙ δz_l on spiking layers."""
    delta = None
    for l, offset in enumerate(offsets):
        current = offset if delta is None else delta @ model.parameters[2 * l] + offset
        delta = rate.gains[l] * current if l < len(rate.gains) else current
    return rate.output + delta


@pytest.mark.parametrize("options", NEURONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "if")
def test_rate_jacobian_accumulates_the_rate_networks_gradient_forward(options):
    """The forward-accumulated J_l·∂L/∂y equals reverse-mode autograd through the linearised rate network
    (an independent order of the same products), and the measured gains D equal autograd's derivative of
    each unit's mean output with respect to a constant shift of its current."""
    model = SpikingMLP(_mlp([1, 12, 12, 1], 16, **options), Surrogate("gaussian", 0.5))
    x, target = _line(40)
    rate = model.rate_pass(x)
    for measured, reference in zip(rate.gains, _gains_by_autograd(model, x)):
        assert torch.allclose(measured, reference, rtol=1e-12, atol=1e-14)
        assert float(reference.abs().max()) > 0.1
    offsets = [torch.zeros(40, model.parameters[2 * l].shape[1], dtype=x.dtype, requires_grad=True)
               for l in range(model.n_layers)]
    loss = ((_linearised(model, rate, offsets) - target) ** 2).mean()
    deltas = torch.autograd.grad(loss, offsets)
    reference = [g for m, d in zip(rate.input_means, deltas) for g in (m.T @ d, d.sum(0))]
    got = estimate("rate-jacobian", Objective(model, x, target), rng=torch.Generator()).gradient
    for g, r in zip(got, reference):
        assert torch.allclose(g, r, rtol=1e-12, atol=1e-15 * float(r.abs().max()))


def test_rate_jacobian_is_exact_on_the_last_hidden_layer_and_the_readout():
    """Where J = diag(D)·W_L the rate approximation is exact: the estimate equals the autograd rate
    gradient (``_rate_gradient``: a constant offset through the full dynamics) there, and elsewhere points
    the same way (cosine 0.997 with the reference measured on this network)."""
    model = SpikingMLP(_mlp([1, 8, 8, 2, 1], 8), Surrogate("gaussian", 0.5))
    x, target = _line(24)
    got = estimate("rate-jacobian", Objective(model, x, target), rng=torch.Generator()).gradient
    reference = _rate_gradient(model, x, target)
    for i in range(4, 8):                               # W, b of the 8 → 2 layer and of the readout
        assert torch.allclose(got[i], reference[i], rtol=1e-12, atol=1e-14 * float(reference[i].abs().max()))
    cosine = float(_flat(got) @ _flat(reference) / _flat(got).norm() / _flat(reference).norm())
    assert cosine > 0.95


def test_rate_jacobian_of_a_product_network():
    """Each net's estimate from its output's cotangent ȳ·C and ȳᵀ·A equals reverse-mode autograd through
    both linearised rate networks and their product."""
    objective = _product_objective("gaussian")
    model, (a, c) = objective.model, objective.inputs
    first, second = model.first.rate_pass(a), model.second.rate_pass(c)
    offsets = [[torch.zeros(len(inputs), net.parameters[2 * l].shape[1], dtype=a.dtype, requires_grad=True)
                for l in range(net.n_layers)] for net, inputs in ((model.first, a), (model.second, c))]
    y = _linearised(model.first, first, offsets[0]) @ _linearised(model.second, second, offsets[1]).T
    deltas = torch.autograd.grad(((y - objective.target) ** 2).mean(), offsets[0] + offsets[1])
    means = first.input_means + second.input_means
    reference = [g for m, d in zip(means, deltas) for g in (m.T @ d, d.sum(0))]
    got = estimate("rate-jacobian", objective, rng=torch.Generator()).gradient
    for g, r in zip(got, reference):
        assert torch.allclose(g, r, rtol=1e-12, atol=1e-15 * float(r.abs().max()))
