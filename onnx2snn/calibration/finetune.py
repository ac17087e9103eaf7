"""End-to-end calibration ("finetune"): all spiking layers and readouts fitted jointly to the ANN's outputs.

The layer-by-layer methods match each layer's activation h(z_ANN), which a unit whose response is a
clipped identity g(z) cannot do where h is curved; the next layer can only partly repair it.  Here the
objective is the network's output, so the layers may redistribute that shape error among themselves
(the SNN becomes the hard-tanh-like network g that best reproduces the ANN's function):

    L(θ) = Σ_o ‖y_o(θ) - y_o^ANN‖² / ‖y_o^ANN‖²  +  Σ_{l read directly} ‖ū_l(θ) - h_l^ANN‖² / ‖h_l^ANN‖²

over the readouts o (relative squared errors), plus the decoded values of every layer that analog nodes
read as they are (a residual connection, a graph output): nothing downstream can repair those, so they
must stay the activation's values.  Where analog nodes follow these boundary values (``tail.py``), the
loss is instead the error of the graph outputs m, the tail run exactly on the SNN's boundary values
b = (y_o, ū_l),

    L(θ) = (1/P) Σ_m E_x |y_m(b(θ)) - y_m^ANN|² / E_x |y_m^ANN|²,
    ∂L/∂b_w(x) ≈ (2/(B·P)) Σ_m J[x, w, m]·(y_m(x) - y_m^ANN(x)) / E_x |y_m^ANN|²   (a batch of B points)

with J = ∂y/∂b held at b^ANN (P outputs), so only the error combinations that reach the outputs count;
where y(b) is not finite (a reciprocal of a readout that reaches 0) the linearisation J·(b - b^ANN)
stands in for y(b) - y^ANN.  Minimising the linearised error Σ_w J·(b_w - b_w^ANN) instead lets long
runs drift where the tail is not linear (the residual fixture, whose hidden pre-activation goes through
tanh: after 20,000 iterations the linearised error was 1.3e-2 and the real one 3.4e-2; with the exact
tail 1.4e-2 on fresh points).

θ = {(W_l, b_l)} of every spiking layer and readout; a layer directly encoded after an analog node, whose
affine is the identity, keeps W_l diagonal (a per-unit scale and shift of its current, which
``layer.fold_unit_affine`` then moves into its neurons: the artifact has no affine there).  Each layer and
readout reads its input u_in as ``wiring.py`` says: static values, a link L of earlier layers' decoded values
(``links.py``: residual sums, static gate products, Concat, Slice; a plain chain's: one layer's), or analog
nodes A on boundary values (a LayerNorm between stages).  Forward values are the exact T-step simulation
(``simulate_layer``: the runtime's neuron code) of each layer l fed by its input's series (the link of its
source layers' simulated series); with the decoded mean ū_l the forward pass is, exactly (L and A commute with
the time average, A reading decoded values),

    z̄_l = u_in,l·W_l + b_l,   u_in,l = L_l(ū_s, ...) or A_l(b, x),   ū_l = (1/T) Σ_t u_l(t),
    y_o = u_in,o·W_o + b_o.

The backward pass goes straight through the quantiser: ∂ū_l/∂z̄_l ≈ g_l'(z̄_l), the slope of the
unquantised response (``layer.static_response``), so with δ_l = ∂L/∂ū_l, in reverse graph order,

    δz_l = δ_l ⊙ g_l'(z̄_l),   ∂L/∂W_l = u_in,lᵀ·δz_l,   ∂L/∂b_l = Σ_N δz_l,
    δ_s += L_lᵀ(δz_l·W_lᵀ) for each source s  (or ∂L/∂b += J_Aᵀ·(δz_l·W_lᵀ), J_A held at b^ANN),

and a readout alike with its boundary value's gradient ∂L/∂y_o (an interior readout, one that A reads,
once every layer after it has added its part).

Two phases, each Adam (``adam.py``) with its own cosine schedule on minibatches:

1. *noisy analog fit* (``ANALOG_PER_ITERATION`` × iterations): the forward values are the unquantised
   responses plus independent noise standing in for the quantisation, ū_l = g_l(z̄_l) + q_l·ξ with
   ξ ~ U(-Q/2, Q/2) per point and unit and q_l = √(Σ_k (w_k·θ+_k / T)²) the unit's decode quantum (one
   spike's worth of its value), so the gradients are exact and an iteration costs no simulation.  The
   noise teaches the network to be insensitive to each unit's quantisation error, which a fit of the
   noiseless hard-tanh network is not: on the wave model (T = 32) the noiseless fit reaches L = 8e-5
   yet 2.5e-3 once quantised.  Q = ``NOISE_WIDTH`` = 2 (noise up to one quantum either way, twice the
   rounding error of a constant input: downstream of spiking layers the final membrane ranges wider);
   residual fixture, 10,000 analog + 600 quantised iterations, T = 32: rel L2 0.053-0.054 (Q = 0, seeds
   0-2), 0.039 (Q = 1, seed 0), 0.030-0.034 (Q = 2, seeds 0-2; 0.031-0.033 with Q = 3 or with 30,000
   analog iterations).  Phase 1's length matters on larger networks: wave (4x100), Q = 2: 0.041-0.045
   after 4,800 analog iterations, 0.034 after 9,600 (learning rate 1e-2).

   Phase 1 runs twice from the layer-by-layer result, with two step-size rules, and the run that ends
   with the lower L on all calibration points is kept (both lengths ``ANALOG_PER_ITERATION`` ×
   iterations), because no one rule suits every network:

   * *relative*: Adam's steps relative to each tensor's mean magnitude (``adam.py``), learning rate
     ``ANALOG_LEARNING_RATE``;
   * *pre-activation*: each weight of layer l steps by about c / E_x‖u_l(x)‖₁ and each bias by c
     (c = ``ANALOG_PREACTIVATION_STEP``, u_l the layer's input: the initial SNN's decoded values, or the
     network inputs), so that a coherent step moves every pre-activation by at most about c, whatever
     the layer's width and weight scale.

   One rule alone, 600 quantised iterations after 9,600 analog, T = 32, rel L2 SNN vs ANN (seeds 0-2 for
   the fixtures, seed 0 or 0-1 for the PINNs):

   ==================  =============  ============  ============  ==================  =============
   rule                wave 4x100     Poisson       Burgers       residual 2x16       tf_tanh_mlp
   ==================  =============  ============  ============  ==================  =============
   relative 1e-2       0.034          ..            ..            0.033               0.017
   relative 3e-2       0.024          0.0062        0.0105        0.031-0.032         0.016
   relative 1e-1       0.037          ..            ..            0.022               0.017
   relative 3e-1       0.175 (div.)   ..            ..            0.013               0.050 (div.)
   pre-act. c = 0.05   ..             ..            ..            0.019-0.020         0.013-0.015
   pre-act. c = 0.1    0.032-0.034    0.0033        0.0102        0.014-0.015         0.012-0.013
   pre-act. c = 0.2    ..             ..            ..            0.010-0.011         0.011-0.049
   ==================  =============  ============  ============  ==================  =============

   The wave's first layer (2 inputs, weights of magnitude ~8: high-frequency features) diverges under
   large relative steps; the small networks and Poisson converge several times further under the
   pre-activation rule, which the wave's hidden layers find too slow (with the relative rule at 3e-2
   they step ~0.2 per pre-activation, Poisson's ~0.002-0.05).  An ℓ2 version (steps c / E‖u‖₂, the
   incoherent estimate) was tried too: c = 0.04 gives the wave 0.024 but Poisson 0.018 and the
   diffusion-reaction model 0.021 (0.0062 and 0.013 under the relative rule).  Running both costs a
   second phase 1 (calibration time 1.2-2x).
2. *quantised fit* (``iterations``): the exact T-step simulation with the straight-through backward
   above.  Every ``EVALUATE_EVERY`` iterations L is evaluated on all calibration points and the best
   parameters are kept (it starts from the best of the layer-by-layer result and the two phase-1 runs),
   so a run never ends on an iterate worse than one it passed.

*Spike penalty* (``spike_cost``, from ``--spike-penalty λ``): for layers of one neuron per unit the loss
adds the spikes the rate code will spend, priced by where they go,

    P = Σ_l cost_l · T · E_x Σ_u s_u(ū_l),   s_u = ρ_u/θ+_u if ρ_u > 0 else -ρ_u/θ-_u,   ρ = (ū - c)/w,

cost_l = λ·fan-out_l / (the ANN's MACs per sample), so that P = λ × synaptic operations per ANN MAC
(s is a rounding neuron's expected spikes per step for the rate ρ).  Its gradient joins δz_l above through
the unclipped rate (``spikes_per_step``): the clip's slope is 0 where a unit is saturated, which is where
it spends a spike every step.
Units pay for every step they spend away from the value they are silent at (0, or their typical value
with ``--rest typical``), so the fit moves them there where the outputs allow it.

*Forward-only gradients* (``gradient="forward"``, ``--calibration forward``; node perturbation in forward
mode, Ren et al. 2022, the estimator the issue's prototype found of lowest variance): no backward pass.
Per batch point x and unit of every layer a direction ε_l(x) ~ N(0, I) perturbs the currents; its tangent
is carried forward with the values through the same straight-through slopes,

    ż_l = ε_l + u̇_in,l·W_l,   u̇_l = g_l'(z̄_l) ⊙ ż_l,   D(x) = Σ_b ∂L/∂b(x)·ḃ(x)   (b: the boundary values),

so D(x) = Σ_l ∂L/∂z_l(x)·ε_l(x) is the directional derivative, and ĝ_l(x) = D(x)·ε_l(x) is an unbiased
estimate of δz_l (E[ε εᵀ] = I) that replaces the backward pass above; the readouts' gradients are local (their
output errors), an interior readout's estimated alike from a direction perturbing its output. A step costs the
forward pass and one tangent pass, and keeps nothing per layer for later.  Measured on poisson1d (one neuron
per unit, T = 32, 16,384 fresh points, ``benchmarks/results/forward_gradient.md``): from the layer-by-layer
result ``advanced`` at 3.28e-2 to 8.7e-3 in 122 s, where back-propagation from the same start reaches 6.5e-3
in 63 s (perturbing one layer per step, cycling, instead of all at once: 8.5e-3 against 7.8e-3 on 4,096
points).

The thresholds stay those of the layer-by-layer pass.  Without a tail, each readout is then refit exactly
by least squares on all calibration points (for a linear readout that is the optimum of L given the
layers); with one, the caller keeps whichever gives the lower real output error of these fitted readouts
and the closed-form least squares through the linearised tail (``tail.refit_through_tail``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtimes.spec import CODING_PHASE

from ..progress import Progress, report_interval, silent
from .adam import Adam
from .layer import ConvertedLayer, simulate_layer, static_response
from .tail import OutputTail
from .wiring import FitWiring

ITERATIONS = 600
ANALOG_PER_ITERATION = 16   # noisy analog iterations per quantised one (phase 1)
NOISE_WIDTH = 2.0           # Q: the analog phase's noise is U(-Q/2, Q/2) decode quanta
BATCH = 256
LEARNING_RATE = 1e-2
ANALOG_LEARNING_RATE = 3e-2     # phase 1's, steps relative to each tensor's magnitude (module docstring)
ANALOG_PREACTIVATION_STEP = 0.1     # phase 1's other rule: steps of ~0.1 in each pre-activation (docstring)
MIN_POINTS = 64
EVALUATE_EVERY = 100    # iterations between evaluations of L on all points; the best parameters are kept
# iterations between linearisations of the analog nodes between stages at the SNN's current values (wiring.py)
LINEARISE_EVERY = 400
# The fit's arithmetic (parameters, Adam's moments, decoded means).  float32 halves the time of the
# matmuls that dominate an analog iteration (poisson1d, phase code, T = 4: 75.7 s -> 40.8 s, 8.0e-3 and
# 7.1e-3 from the ANN), but the diffusion-reaction model's phase code then floored at 1.2e-2 (1.14e-2 with
# the 2.5x fit at T = 12, against 7.6e-3 in float64), so the fit stays in float64.
FIT_DTYPE = np.float64


@dataclass
class _Pass:
    """One forward pass on a batch: each layer's input u_in [B, m], decoded mean ū [B, n] and slope
    g'(z̄) [B, n], each readout's input [B, m_o], and the boundary values b [B, w] (readouts, then decoded)."""

    inputs: list[np.ndarray]
    means: list[np.ndarray]
    slopes: list[np.ndarray]
    readout_inputs: list[np.ndarray]
    values: list[np.ndarray]


def finetune(layers: list[ConvertedLayer], wiring: FitWiring, readouts: list[tuple[np.ndarray, np.ndarray]],
             targets: list[np.ndarray], timesteps: int, rng: np.random.Generator, tail: OutputTail | None = None,
             iterations: int = ITERATIONS, batch: int = BATCH, lr: float = LEARNING_RATE, *,
             analog_iterations: int, spike_cost: list[float] | None = None, progress: Progress = silent,
             gradient: str = "backprop", diagonal: set[int] = frozenset()
             ) -> tuple[list[ConvertedLayer], list[tuple[np.ndarray, np.ndarray]]]:
    """Fit all (W, b) end to end; returns the fitted layers and readout affines (W, b).

    ``layers`` in topological order, each reading its input as ``wiring`` says (``wiring.py``: static
    values, a link of earlier layers, analog nodes on boundary values); ``readouts`` = (W [m, p], b [p]) in
    ``wiring.readouts`` order, trained alongside; ``targets``: b^ANN [N, w] per boundary value (readouts,
    then ``wiring.decoded``); ``tail``: J over the boundary values in that order (``tail.boundary_tensors``);
    ``iterations`` and ``lr``: phase 2's; ``analog_iterations``: the length of each of phase 1's two runs
    (``ConversionOptions.finetune_analog_iterations``); ``spike_cost[l]``: the loss of one spike per
    sample of layer l (the spike penalty, module docstring; None: no penalty); ``progress``: each run's
    steps with the best loss so far (``onnx2snn.progress``); ``gradient``: "backprop" or "forward" (node
    perturbation in forward mode, module docstring); ``diagonal``: layers whose W stays diagonal (an
    identity affine: a per-unit scale and shift, module docstring)."""
    R = len(readouts)
    N = targets[0].shape[0]
    weights = [l.weight.astype(FIT_DTYPE) for l in layers] + [r[0].astype(FIT_DTYPE) for r in readouts]
    biases = [l.bias.astype(FIT_DTYPE) for l in layers] + [r[1].astype(FIT_DTYPE) for r in readouts]
    # E|y|² per readout and held layer (relative errors); with a tail E|y_m|² per graph output m
    scales = [tail.norms] if tail is not None else [max(float(np.mean(t.astype(np.float64) ** 2)), 1e-30)
                                                    for t in targets]
    L = len(layers)

    def current(l: int) -> ConvertedLayer:
        return layers[l].with_(weight=weights[l].astype(layers[l].weight.dtype),
                               bias=biases[l].astype(layers[l].bias.dtype))

    quanta = [_decode_quantum(layer, timesteps).astype(FIT_DTYPE) for layer in layers]

    def forward(idx: np.ndarray, analog: bool = False) -> _Pass:
        """Decoded means ū_l [B, n] of the batch and the slopes g_l'(z̄_l) at z̄_l = u_in,l·W_l + b_l: from
        the T-step simulation, or with ``analog`` from the noisy unquantised response (phase 1)."""
        series, means, slopes, inputs, values = [], [], [], [], {}
        readout_inputs = {}

        def boundary(k: int) -> np.ndarray:
            if k not in values:
                if k < R:
                    readout_inputs[k] = wiring.readouts[k].mean(means, idx, boundary, FIT_DTYPE)
                    values[k] = readout_inputs[k] @ weights[L + k] + biases[L + k]
                else:
                    values[k] = wiring.decoded[k - R].mean(means, idx, boundary, FIT_DTYPE)
            return values[k]

        for l in range(L):
            source = wiring.layers[l]
            u_in = source.mean(means, idx, boundary, FIT_DTYPE)
            value, slope = static_response(u_in @ weights[l] + biases[l], layers[l])
            if analog:
                means.append(value + quanta[l] * (NOISE_WIDTH * (rng.random(value.shape, dtype=FIT_DTYPE) - 0.5)))
            else:
                dtype = layers[l].weight.dtype
                feed, static = (u_in.astype(dtype), True) if source.segment is not None else \
                    source.series(series, idx, boundary, dtype)
                trace = simulate_layer(feed, current(l), timesteps, static)
                series.append(trace.series)
                means.append(trace.mean.astype(FIT_DTYPE))
            slopes.append(slope)
            inputs.append(u_in)
        every = [boundary(k) for k in range(len(targets))]
        return _Pass(inputs, means, slopes, [readout_inputs[o] for o in range(R)], every)

    def residuals(values: list[np.ndarray], idx: np.ndarray) -> list[np.ndarray]:
        """Boundary errors b - b^ANN, or with a tail the output errors y(b) - y^ANN (the tail run exactly)."""
        errors = [v - t[idx] for v, t in zip(values, targets)]
        if tail is None:
            return errors
        with np.errstate(all="ignore"):
            exact = tail.evaluate(values, idx) - tail.outputs[idx]
        finite = np.isfinite(exact)
        if finite.all():
            return [exact]
        linear = np.einsum("bw,bwp->bp", np.concatenate(errors, axis=1), tail.jacobian[idx])
        return [np.where(finite, exact, linear)]    # the linearisation where y(b) is not finite

    costs = [0.0] * L if spike_cost is None else list(spike_cost)

    def penalty(means: list[np.ndarray]) -> tuple[float, list[np.ndarray | None]]:
        """Σ_l cost_l·T·E_x Σ_u spikes per step, and its surrogate gradient with respect to each z̄_l."""
        total, grads = 0.0, []
        for l in range(L):
            if not costs[l] or layers[l].neurons.shape[1] != 1:
                grads.append(None)
                continue
            rate, slope = spikes_per_step(layers[l], means[l])
            total += costs[l] * timesteps * float(np.mean(np.sum(rate, axis=1)))
            grads.append(costs[l] * timesteps * slope / means[l].shape[0])
        return total, grads

    def loss(p: _Pass, idx: np.ndarray) -> float:
        residual = residuals(p.values, idx)
        return sum(float(np.mean(r ** 2 / n)) for r, n in zip(residual, scales)) + penalty(p.means)[0]

    every = np.arange(N)
    segments = [source.segment for source in wiring.layers if source.segment is not None]

    def linearise(p: _Pass) -> None:
        """Each segment's J at the boundary values of pass ``p`` (all points)."""
        for segment in segments:
            segment.linearise([p.values[k] for k in segment.boundary])

    initial = forward(every)
    best = (loss(initial, every), [w.copy() for w in weights], [b.copy() for b in biases])
    start = best

    def keep_if_best() -> None:
        nonlocal best
        value = loss(forward(every), every)
        if value < best[0]:
            best = (value, [w.copy() for w in weights], [b.copy() for b in biases])

    def iterate(adam: Adam, rate: float, analog: bool) -> None:
        """One Adam step on a random batch (forward, the backward of the module docstring)."""
        idx = np.sort(rng.choice(N, min(batch, N), replace=False))
        p = forward(idx, analog)
        delta = [np.zeros_like(m) for m in p.means]
        grads_w = [None] * len(weights)
        grads_b = [None] * len(biases)
        residual = residuals(p.values, idx)
        if tail is None:
            grads = [2.0 * r / (r.size * n) for r, n in zip(residual, scales)]
        else:
            grads = _tail_gradients(residual[0], tail, idx, [v.shape[1] for v in p.values])
        boundary_grads = dict(enumerate(grads))     # a segment adds to the interior ones

        def back_from_boundary(k: int) -> None:
            """A boundary value's gradient into its readout's (W, b) and on to the layers it reads."""
            g = boundary_grads[k]
            if k < R:
                grads_w[L + k], grads_b[L + k] = p.readout_inputs[k].T @ g, g.sum(axis=0)
                wiring.readouts[k].backward(g @ weights[L + k].T, idx, delta, boundary_grads)
            else:
                wiring.decoded[k - R].backward(g, idx, delta, boundary_grads)

        for k in range(len(grads)):
            if k not in wiring.interior:
                back_from_boundary(k)
        pulls = penalty(p.means)[1]
        if gradient == "forward":           # δz estimated forward; the spike penalty pulls on its own layer
            estimates, interior = _perturbed_currents(p, weights, wiring, grads, idx, rng)
            currents = [dz if pull is None else dz + pull for dz, pull in zip(estimates, pulls)]
            for k, dy in interior.items():
                grads_w[L + k], grads_b[L + k] = p.readout_inputs[k].T @ dy, dy.sum(axis=0)
        else:
            currents = [None] * L
            for l in reversed(range(L)):
                for k in [k for k, last in wiring.interior.items() if last == l]:
                    back_from_boundary(k)
                dz = delta[l] * p.slopes[l] if pulls[l] is None else delta[l] * p.slopes[l] + pulls[l]
                currents[l] = dz
                if wiring.layers[l].static is None:
                    wiring.layers[l].backward(dz @ weights[l].T, idx, delta, boundary_grads)
        for l, dz in enumerate(currents):
            grads_w[l], grads_b[l] = p.inputs[l].T @ dz, dz.sum(axis=0)
            if l in diagonal:
                grads_w[l] = np.diag(np.diag(grads_w[l]))
        adam.step(grads_w + grads_b, rate)

    def restore(kept: tuple) -> None:
        weights[:], biases[:] = [w.copy() for w in kept[1]], [b.copy() for b in kept[2]]

    def run(length: int, rate: float, analog: bool, label: str, step_sizes: list[float] | None = None) -> None:
        """``length`` Adam steps from the current parameters, cosine schedule from ``rate``."""
        adam = Adam(weights + biases, scale=step_sizes)
        report = report_interval(length)
        for step in range(length):
            if segments and step % LINEARISE_EVERY == 0:
                linearise(forward(every))
            iterate(adam, rate * 0.5 * (1 + np.cos(np.pi * step / length)), analog)
            if not analog and ((step + 1) % EVALUATE_EVERY == 0 or step + 1 == length):
                keep_if_best()
            if (step + 1) % report == 0 or step + 1 == length:
                progress(f"finetune: {label}", step + 1, length, f"best loss {best[0]:.3e}")

    norms = [_l1_norm(u) for u in initial.inputs] + [_l1_norm(u) for u in initial.readout_inputs]
    for k, (step_sizes, rate) in enumerate([(None, ANALOG_LEARNING_RATE), ([1.0 / n for n in norms] + [1.0] * len(
            biases), ANALOG_PREACTIVATION_STEP)]):
        if analog_iterations:
            restore(start)
            run(analog_iterations, rate, True, f"analog fit {k + 1}/2", step_sizes)
            keep_if_best()
    restore(best)
    run(iterations, lr, False, "quantised fit")
    restore(best)
    return [current(l) for l in range(L)], [(weights[L + o], biases[L + o]) for o in range(R)]


def _perturbed_currents(p: _Pass, weights: list[np.ndarray], wiring: FitWiring, grads: list[np.ndarray],
                        idx: np.ndarray, rng: np.random.Generator) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """Forward-only estimates of ∂L/∂z_l [B, n_l] for every layer (node perturbation, module docstring):
    ε_l ~ N(0, I) per point and unit, the tangent ż_l = ε_l + u̇_in,l·W_l (u̇_in through the layer's link or
    segment, ``wiring.py``), u̇_l = g_l'·ż_l carried forward with the values, D(x) = Σ_b ∂L/∂b(x)·ḃ(x) at
    the boundary values b, and ĝ_l(x) = D(x)·ε_l(x).  An interior readout (one a segment reads) is
    perturbed alike at its output: its estimate ∂L/∂y_o, by boundary index, is the second value."""
    L, R = len(p.slopes), len(wiring.readouts)
    noise = [rng.standard_normal(m.shape) for m in p.means]
    interior = {k: rng.standard_normal(p.values[k].shape) for k in sorted(wiring.interior) if k < R}
    tangent: list[np.ndarray] = []
    found: dict[int, np.ndarray] = {}

    def boundary(k: int) -> np.ndarray:
        if k not in found:
            if k < R:
                t = wiring.readouts[k].tangent(tangent, idx, boundary) @ weights[L + k]
                found[k] = t + interior[k] if k in interior else t
            else:
                found[k] = wiring.decoded[k - R].tangent(tangent, idx, boundary)
        return found[k]

    for l in range(L):
        t_in = wiring.layers[l].tangent(tangent, idx, boundary)
        z = noise[l] if t_in is None else noise[l] + t_in @ weights[l]
        tangent.append(z * p.slopes[l])
    directional = sum(np.sum(g * boundary(k), axis=1) for k, g in enumerate(grads))         # D(x) [B]
    return [directional[:, None] * e for e in noise], {k: directional[:, None] * e for k, e in interior.items()}


def _tail_gradients(residual: np.ndarray, tail: OutputTail, idx: np.ndarray, widths: list[int]) -> list[np.ndarray]:
    """∂L/∂b for the boundary values b [B, w] from the output errors r = y(b) - y^ANN [B, P]:
    2·Σ_m J[x, w, m]·r[x, m] / (E|y_m|²·B·P), J held at b^ANN (module docstring)."""
    J = tail.jacobian[idx]                                             # [B, W, P]
    grad = 2.0 * np.einsum("bp,bwp->bw", residual / tail.norms, J) / residual.size
    return np.split(grad, np.cumsum(widths)[:-1], axis=1)


def spikes_per_step(layer: ConvertedLayer, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected spikes per step of one neuron per unit from its decoded mean ū [B, n], and their surrogate
    derivative with respect to the current z̄: the neuron's rate ρ = (ū - c)/w costs ρ/θ+ spikes per step
    above 0 and -ρ/θ- below (a side with θ = inf has no neuron: 0); the derivative is that of the
    unclipped ρ = z̄ + β, sign(ρ)/θ, so a saturated unit, which spends a spike every step whatever its
    clip's slope of 0 says, is pulled back towards rest."""
    w, c = layer.decode_weight[:, 0], layer.decode_offset
    rho = (mean - c) / np.where(w != 0, w, 1.0)
    inverse_pos = np.where(np.isfinite(layer.neurons.theta_pos[:, 0]), 1.0 / layer.neurons.theta_pos[:, 0], 0.0)
    inverse_neg = np.where(np.isfinite(layer.neurons.theta_neg[:, 0]), 1.0 / layer.neurons.theta_neg[:, 0], 0.0)
    per_unit = np.where(rho > 0, inverse_pos, -inverse_neg)
    return rho * per_unit, per_unit


def _l1_norm(values: np.ndarray) -> float:
    """E_x ‖u(x)‖₁ of a layer's input u [N, m] (at least 1e-3)."""
    return max(float(np.mean(np.sum(np.abs(values.astype(np.float64)), axis=1))), 1e-3)


def _decode_quantum(layer: ConvertedLayer, timesteps: int) -> np.ndarray:
    """q [n]: one spike's worth of each unit's decoded value, √(Σ_k (w_k·θ+_k / T)²) over its live
    neurons (θ+ = inf padding counts 0); for a phase-coded layer the last digit's, w·θ·2^(1-T)."""
    theta = np.where(np.isfinite(layer.neurons.theta_pos), layer.neurons.theta_pos, 0.0)
    step = 2.0 ** (1 - timesteps) if layer.neurons.coding == CODING_PHASE else 1.0 / timesteps
    return np.sqrt(np.sum((layer.decode_weight * theta * step) ** 2, axis=1))
