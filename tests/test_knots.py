"""Knot placement for the least error per spike (onnx2snn/knots.py) and the budget's per-unit model."""

import importlib
from dataclasses import replace

import numpy as np

import onnx2snn
from conftest import FIXTURES
from onnx2snn.calibration import pipeline
from onnx2snn.calibration.budget import STATIC_ROUNDING_WEIGHT, unit_error_model
from onnx2snn.calibration.options import ConversionOptions
from onnx2snn.expansion import expand, fitted_interpolation_error
from onnx2snn.importer import import_model
from onnx2snn.knots import KnotRule, crossed_pieces, spike_knots
from onnx2snn.structure import analyse
from runtimes.neuron import simulate_constant

convert_module = importlib.import_module("onnx2snn.convert")   # the module, not the function onnx2snn.convert


def _oscillating_units(n: int = 3, points: int = 2000):
    """sin(30·z) on currents spanning 1.5-3 periods, denser in the middle (as a hidden SIREN layer's)."""
    rng = np.random.default_rng(0)
    half = np.array([0.16, 0.25, 0.31])[:n]
    z = np.clip(rng.normal(0.0, 0.45, (points, n)), -1, 1) * half
    return (lambda x: np.sin(30.0 * x)), z, -half * 1.05, half * 1.05


def test_knot_spacing_meets_the_lagrange_condition():
    """h = z²/2 (A = 1/720 everywhere), rounding negligible (T = 10⁶), uniform currents on [0, 1] (p = 1,
    F(z) = z): Δ(z)⁵ ∝ c(z) = min(z, 1 - z) + ν, so the middle piece is ((½ + ν)/(c + ν))^⅕ times as
    wide as one at distance c from an end; with ν → ∞ the pieces are equal."""
    z = np.linspace(0.0, 1.0, 20001)[:, None]
    parabola = lambda x: 0.5 * x ** 2
    nu, K = 0.01, 40
    knots = spike_knots(parabola, np.zeros(1), np.ones(1), K, z, timesteps=10 ** 6, update_cost=nu)[:, 0]
    widths, centres = np.diff(knots), 0.5 * (knots[1:] + knots[:-1])
    middle = np.argmin(np.abs(centres - 0.5))
    for k in (3, 6, K - 7):
        c = min(centres[k], 1 - centres[k])
        expected = ((min(centres[middle], 1 - centres[middle]) + nu) / (c + nu)) ** 0.2
        assert np.isclose(widths[middle] / widths[k], expected, rtol=0.05)
    equal = np.diff(spike_knots(parabola, np.zeros(1), np.ones(1), K, z, 10 ** 6, update_cost=1e6)[:, 0])
    assert equal.max() / equal.min() < 1.02


def test_crossed_pieces_count_the_exact_spikes_of_the_expansion():
    """Neurons of the expansion driven by each point's constant current for T steps (the runtime's neuron):
    the pieces between the reference knot and z fire every step, the partly active one 0..T times."""
    h, z, lo, hi = _oscillating_units()
    T, center = 32, np.median(z, axis=0)
    found = expand(h, lo, hi, 24, center, z, KnotRule(timesteps=T, update_cost=0.02))
    _, counts = simulate_constant(z, found.neurons, T)
    spikes = counts.sum(axis=2).mean(axis=0)                                # per unit, per point
    crossed = crossed_pieces(_knots(found, lo, hi), center, z)
    assert np.all(T * crossed <= spikes + 1e-9) and np.all(spikes <= T * (crossed + 1))


def _knots(found, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The expansion's knots [K + 1, n]: the left end t_k of piece k is -β_k above the reference and
    -β_k - Δ_k below it."""
    p = found.neurons
    below = np.isfinite(p.theta_neg)
    left = np.where(below, -p.bias - np.where(below, p.theta_neg, 0.0), -p.bias)      # [n, K]
    return np.concatenate([left.T, hi[None]], axis=0)


def test_spike_knots_reach_an_error_with_fewer_spikes_than_error_only_knots():
    """With K free, error ∝ K⁻² and crossings ∝ K: the spikes that meet an error e scale as C·√E.  On
    oscillating units the knots that weigh crossings (ν = 0.02, a layer of fan-out 100) cross fewer pieces
    and have the lower C·√E than those that weigh error alone (ν → ∞)."""
    h, z, lo, hi = _oscillating_units()
    center = np.median(z, axis=0)
    cost = {}
    for nu in (0.02, 1e6):
        knots = spike_knots(h, lo, hi, 32, z, 32, update_cost=nu)
        error = fitted_interpolation_error(h, knots, z)
        crossed = crossed_pieces(knots, center, z)
        cost[nu] = (crossed, (crossed + 0.5) * np.sqrt(error))
    assert np.all(cost[0.02][0] < 0.9 * cost[1e6][0]) and np.all(cost[0.02][1] < cost[1e6][1])


def test_budget_reference_pieces_follow_the_monotone_stretches():
    """4 pieces per monotone stretch of h on the unit's range (oscillation.oscillation): tanh has one;
    sin(30z) over two periods has 8 quarter-periods of total variation 8 against a range of 2 (4x)."""
    period = 2 * np.pi / 30
    lo, hi = np.array([-3.0, 0.0]), np.array([3.0, 2 * period])
    z = lo + (hi - lo) * np.random.default_rng(0).uniform(0, 1, (1000, 2))
    h = lambda x: np.stack([np.tanh(x[:, 0]), np.sin(30 * x[:, 1])], axis=1)
    model = unit_error_model(h, lo, hi, z, KnotRule(), 64)
    assert list(model.reference) == [4, 16]


def test_knots_are_priced_only_on_static_layers_read_by_readouts():
    """SIREN's last hidden layer (static once its first layer is computed once per point, read only by the
    readout) is priced; a tanh MLP's first layer (static, read by spiking layers: rounding weight 2) and
    its later layers (fed by spikes) keep the curvature rule."""
    options = ConversionOptions(timesteps=32)
    siren = analyse(import_model(FIXTURES / "torch_siren.onnx").model, analog_first={"/Sin": "oscillates"})
    assert pipeline._knot_rule(siren, 0, options) == KnotRule(True, 32, 1.0, 2.0)     # fan-out 1: ν = 1.8/0.9
    mlp = analyse(import_model(FIXTURES / "torch_tanh_gemm.onnx").model)
    rules = [pipeline._knot_rule(mlp, k, options) for k in range(len(mlp.layers))]
    assert len(rules) > 1 and not any(r.priced for r in rules)
    assert rules[0].rounding_weight == STATIC_ROUNDING_WEIGHT and rules[1].rounding_weight == 1.0


def test_priced_knots_convert_siren_with_fewer_spikes_and_no_larger_error(monkeypatch):
    """The SIREN fixture by default against the same conversion with the curvature rule on its priced layer,
    both measured against the ANN on the same fresh points; with the range reduction off
    (``sine_range.py``), so the priced layer is the oscillating sin(30·z) the rule was built for."""
    monkeypatch.setattr(convert_module, "reducible_sines", lambda *args: [])

    def convert():
        return onnx2snn.convert(FIXTURES / "torch_siren.onnx", samples=1024, validation_points=512, timesteps=16)
    priced = convert()
    rule = pipeline._knot_rule
    monkeypatch.setattr(pipeline, "_knot_rule", lambda *args: replace(rule(*args), priced=False))
    curvature = convert()
    assert priced.report["spikes_per_sample"] < 0.95 * curvature.report["spikes_per_sample"]
    assert priced.report["validation"]["rel_l2_snn_vs_ann"] <= curvature.report["validation"]["rel_l2_snn_vs_ann"]
