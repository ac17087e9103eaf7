"""The cheapest SNN for an accuracy: ``onnx2snn MODEL --target-error E``.

Candidates are conversions (method, T, first layer, rest value), each measured on *selection* points
drawn from the domain with their own seed (neither calibration nor the final validation points):
its relative L2 error against the ANN, e_sel (a grid model: the largest over ``SELECTION_GRIDS`` grids),
and its energy ratio ρ = E_SNN / E_ANN under one cost table (``energy.py``; ``--energy-model``).  The
result is the candidate of least ρ with e_sel ≤ E·MARGIN (MARGIN < 1 covers the gap between the
selection and fresh points), re-measured on fresh validation points for the report; every candidate is
listed with its error and energy (``report["search"]``, the Pareto front marked).

Search, per method, along T (spikes and neuron updates grow about linearly in T, the error falls):

* ``pwl`` (``--pieces auto`` with its error budget τ = 0.8·E): T ascending in ``PWL_T``, stopping at the
  first that meets E (more steps only add spikes).  These conversions are cheap and bound the rest.
* ``phase`` (``--coding phase``: one neuron per unit sending the binary digits of its value, fitted end to
  end): from the fewest digits ``PHASE_T[0]`` up, each candidate's fit started from the last one's (the
  conversion's own curriculum of digits, ``calibration.pipeline.calibrate``: a few seconds per digit
  after the first fit), until the goal is met (the least T that meets it: more digits only cost more),
  the error stops falling, or ``PHASE_T`` ends; where it floors above the goal but near it, its best T
  once more with a longer fit (``LONGER_FIT``).  Measured on the shipped models it is the cheapest code
  at every error it reaches (``benchmarks/results/energy.md``).  Where neither the stream nor its longer
  fit meets the goal on a network whose layers are joined by links (``linked.py``), both once more on the
  plain-chain analysis (``links=False``: only the plain chains of layers spike, the rest is computed once
  per point), whose one-neuron units are fewer, so its error floors lower at more energy: the modified
  MLP fixture, T = 7-10, 8.8e-3 to 4.9e-3 at 0.90-1.01x the ANN, where the linked network floors at
  1.1e-2 (0.59-0.74x; ``benchmarks/results/architectures.md``).
* ``finetune`` (one neuron per unit, rate code, end-to-end fit), only where neither found one, with each
  unit's rest value moved to where its spikes cost least (``--rest typical``): from T = 4, each next T predicted on a log-log line through the last
  measurements (``next_timesteps``), narrowing in on the least T that meets E, stopping at an error floor
  or where the predicted energy exceeds the best found.  Only where it finds none, the same with units
  silent at 0 (``--rest zero``: finer steps, more spikes).

The first hidden layer of a rate-coded candidate is made analog (``--first-layer analog``) when its spikes
would cost more than computing it once (``first_layer_choice``): at 45 nm fp32 from T = 6 with units
silent at 0, from T = 21 with rest values moved; a phase-coded one's spikes (a few digits per unit) always
cost less than the MACs.
The spike penalty (``--spike-penalty``) is not searched: on poisson1d at T=8 (first layer analog) λ = 1e-5
moved 1.27x to 1.18x of the ANN at the same error and λ = 1e-4 to 1.10x at 1.08e-2 (from 7.3e-3), where
moving the rest values gave 0.56x.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .calibration.finetune import ITERATIONS
from .convert import ConversionResult, convert
from .energy import DEFAULT_MODEL, load_tables
from .errors import CalibrationError
from .importer import import_model
from .inputs import is_grid_model, resolve_domain, validation_inputs
from .progress import Progress, silent, steps_only
from .report import build_report, finish_timing
from .structure import analyse

FINETUNE_T = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
PHASE_T = tuple(range(4, 13))
# Where the phase stream floors above the goal but within LONGER_FIT_WITHIN of it, its best T once more with
# LONGER_FIT times the fit: the floor is the fit's (wave, T = 8: 1.64e-2 with 600 iterations, 1.01e-2
# with the analog phase 2.5x longer, 9.7e-3 with both; 3,000 quantised steps alone 1.56e-2).
LONGER_FIT, LONGER_FIT_WITHIN = 2.5, 2.0
PWL_T = (8, 16, 32, 64, 128)
MARGIN = 0.9
SELECTION_POINTS = 2048
SELECTION_SEED_OFFSET = 2_000_003
# A grid model's error depends on its random per-axis sample: spinn_burgers, phase T=10, three 128x128 grids
# 2.13e-3 / 2.22e-3 / 2.57e-3 (three 512x512: 2.37-2.50e-3), a spread MARGIN does not cover; its e_sel is
# the largest over SELECTION_GRIDS independent grids (evaluated per axis: cheap).
SELECTION_GRIDS = 3
REST_VALUES = ("typical", "zero")
# Spikes per neuron and step of one neuron per unit after finetune (benchmarks/results/energy.md): 0.86-0.93
# with units silent at 0 (poisson1d, T=8-128), 0.17-0.26 with rest values moved (poisson1d and
# diffusion_reaction, T=4-16).
FIRST_LAYER_RATE = {"zero": 0.9, "typical": 0.25}
# Finetune's one-neuron error falls about as T^-½ (poisson1d: 1.24e-2, 7.3e-3, 4.7e-3, 2.8e-3, 2.4e-3 at
# T = 4, 8, 32, 64, 128): the first step's guess, before a stream has two measurements of its own.
ERROR_EXPONENT = 0.5
MIN_EXPONENT = 0.15     # a slower fall is a floor: diffusion_reaction's errors at T = 24-128, rest zero
MAX_JUMP = 4


@dataclass
class Candidate:
    method: str
    timesteps: int
    first_layer: str
    rest: str
    rel_l2: float = math.nan
    ratio: float = math.nan
    spikes_per_sample: float = math.nan
    seconds: float = 0.0
    result: ConversionResult | None = None
    finetune_iterations: int | None = None      # None: the default
    links: bool = True                          # False: the plain-chain analysis (module docstring)

    def row(self) -> dict:
        return {"method": self.method, "timesteps": self.timesteps, "first_layer": self.first_layer,
                "rest": self.rest, "rel_l2_snn_vs_ann": self.rel_l2,
                **({"finetune_iterations": self.finetune_iterations} if self.finetune_iterations else {}),
                **({"links": False} if not self.links else {}),
                "energy_ratio": self.ratio, "spikes_per_sample": self.spikes_per_sample,
                "seconds": round(self.seconds, 2)}


def phase_allowed(options: dict) -> bool:
    """Whether the user's options leave room for the phase code (``ConversionOptions._check_phase``)."""
    return (not options.get("spike_penalty") and options.get("neuron") in (None, "round")
            and options.get("readout") in (None, "analog") and not options.get("shift")
            and options.get("v0") is None and "forward" not in str(options.get("calibration") or ""))


def plain_chains_differ(model) -> bool:
    """Whether the plain-chain analysis converts ``model`` (some layers spike) with other layers than the
    linked one, which then has links."""
    linked = analyse(model)
    return not linked.plain and bool(analyse(model, links=False).layers)


def next_phase_timesteps(stream: list[Candidate], goal: float) -> int | None:
    """The next T of the phase stream (module docstring), or None to stop: one digit more while the goal
    is not met and the error still falls."""
    last = stream[-1]
    if last.rel_l2 <= goal or (len(stream) >= 2 and last.rel_l2 >= stream[-2].rel_l2):
        return None                                     # met, or the error stopped falling: a floor
    return last.timesteps + 1 if last.timesteps < PHASE_T[-1] else None


def next_timesteps(stream: list[Candidate], goal: float, best: Candidate | None) -> int | None:
    """The next T of a one-neuron stream (candidates of one rest value, measured), or None to stop.

    Between the largest T that missed the goal below the smallest T that met it (T_f, error e_f, energy
    ρ_f), the T that reaches the goal is predicted on a log-log line, e(T) = e_f·(T_f/T)^α, α from the
    stream's last two measurements (``ERROR_EXPONENT`` before there are two; at least ``MIN_EXPONENT``:
    flatter is a floor); the next T is the smallest untried in ``FINETUNE_T`` at or above it, at most
    ``MAX_JUMP``·T_f (a first guess of α can be far off: Burgers falls as T^-0.7, not T^-0.5), or, where
    the prediction lies beyond the smallest T that met, the largest untried T below that one.  None when
    no T is left between, when the error stopped falling, or when the predicted energy ρ_f·(T/T_f)^β
    (β from the stream's last two measurements, else 1) already exceeds the best candidate found."""
    met = [c.timesteps for c in stream if c.rel_l2 <= goal]
    ceiling = min(met) if met else math.inf
    failed = [c for c in stream if c.rel_l2 > goal and c.timesteps < ceiling]
    if not failed:
        return None
    anchor = max(failed, key=lambda c: c.timesteps)
    alpha, beta = ERROR_EXPONENT, 1.0
    if len(stream) >= 2:
        a, b = sorted(stream[-2:], key=lambda c: c.timesteps)
        if b.timesteps > a.timesteps:
            span = math.log(b.timesteps / a.timesteps)
            alpha = math.log(max(a.rel_l2, 1e-30) / max(b.rel_l2, 1e-30)) / span
            beta = min(max(math.log(b.ratio / a.ratio) / span, 0.0), 1.0) if a.ratio > 0 and b.ratio > 0 else 1.0
            if alpha < MIN_EXPONENT and not met:
                return None                             # the error stopped falling: a floor
            alpha = max(alpha, MIN_EXPONENT)
    wanted = min(anchor.timesteps * (anchor.rel_l2 / goal) ** (1.0 / alpha), MAX_JUMP * anchor.timesteps)
    tried = {c.timesteps for c in stream}
    between = [T for T in FINETUNE_T if anchor.timesteps < T < ceiling and T not in tried]
    ahead = [T for T in between if T >= wanted]
    if not between:
        return None
    T = min(ahead) if ahead else max(between)
    if best is not None and anchor.ratio * (T / anchor.timesteps) ** beta >= best.ratio:
        return None
    return T


def first_layer_choice(timesteps: int, rest: str, table: dict) -> str:
    """"analog" where the first layer's spikes would cost more than computing it once: per synapse,
    T·ρ₀·e_synop > e_mac, ρ₀ = ``FIRST_LAYER_RATE[rest]`` spikes per step (a PWL unit's pieces: as "zero")."""
    return "analog" if timesteps * FIRST_LAYER_RATE[rest] * table["synop"] > table["mac"] else "spiking"


def cheapest_conversion(model, target_error: float, energy_model: str = DEFAULT_MODEL, domain=None,
                        progress: Progress | None = None, validation_points: int = 2048,
                        seed: int = 0, energy_table: str | None = None, **options) -> ConversionResult:
    """The conversion of least energy whose error meets ``target_error`` (module docstring); its report
    holds ``search`` (every candidate), ``target_error`` and ``energy_model``.  Raises
    ``CalibrationError`` when no candidate meets it.  ``energy_table``: a JSON file of further cost tables
    (``energy.load_tables``), whose models ``energy_model`` may name."""
    if not 0 < target_error < 1:
        raise CalibrationError(f"target error must be in (0, 1), got {target_error}")
    tables = load_tables(energy_table)
    if energy_model not in tables:
        raise CalibrationError(f"unknown energy model {energy_model!r}; use {', '.join(tables)}")
    table = tables[energy_model]
    say = progress or silent
    started = time.perf_counter()
    imported = import_model(model)
    box = resolve_domain(imported, domain)
    rng = np.random.default_rng(seed + SELECTION_SEED_OFFSET)
    selections = [validation_inputs(imported, box, SELECTION_POINTS, rng)
                  for _ in range(SELECTION_GRIDS if is_grid_model(imported) else 1)]
    goal = MARGIN * target_error
    tried: list[Candidate] = []

    def measure(c: Candidate, warm=None) -> Candidate:
        say(f"search: {c.method}, T={c.timesteps}, first layer {c.first_layer}, rest {c.rest}"
            f"{'' if c.links else ', plain chains'}")
        started = time.perf_counter()
        kind = {"pieces": 1, "calibration": "finetune", "rest": c.rest} if c.method == "finetune" else \
            {"pieces": 1, "calibration": "finetune", "coding": "phase"} if c.method == "phase" else \
            {"pieces": "auto", "tolerance": min(options.get("tolerance") or 0.8 * target_error, 0.5)}
        if c.finetune_iterations:
            kind["finetune_iterations"] = c.finetune_iterations
        c.result = convert(model, domain=box, timesteps=c.timesteps, seed=seed, validate=False,
                           progress=steps_only(progress), warm_start=warm,
                           first_layer=c.first_layer, links=c.links,
                           **{**{k: v for k, v in options.items() if k != "tolerance"}, **kind})
        reports = [build_report(imported, c.result, points, {}, energy_table) for points in selections]
        report = reports[0]
        c.rel_l2 = max(r["validation"]["rel_l2_snn_vs_ann"] for r in reports)
        c.ratio = report["energy"][energy_model]["ratio"]
        c.spikes_per_sample = report["spikes_per_sample"]
        c.seconds = time.perf_counter() - started
        say(f"  error {c.rel_l2:.2e} (goal {goal:.2e}), energy {c.ratio:.3f}x ANN ({energy_model})")
        tried.append(c)
        return c

    def best() -> Candidate | None:
        met = [c for c in tried if c.rel_l2 <= goal]
        return min(met, key=lambda c: c.ratio) if met else None

    def first_layer(T: int, rest: str) -> str:
        return first_layer_choice(T, rest, table)

    for T in PWL_T:                                    # cheap conversions first: they bound the rest
        if measure(Candidate("pwl", T, first_layer(T, "zero"), "zero")).rel_l2 <= goal:
            break
    def phase_stream(links: bool) -> list[Candidate]:
        phase = []
        T = PHASE_T[0] if phase_allowed(options) else None
        while T is not None:
            warm = phase[-1].result.calibration if phase else None
            phase.append(measure(Candidate("phase", T, "spiking", "zero", links=links), warm))
            T = next_phase_timesteps(phase, goal)
        return phase

    def longer_fit(phase: list[Candidate]) -> bool:
        """The stream's closest T once more with a longer fit where it floors near the goal; whether the
        stream (with it) met the goal."""
        closest = min(phase, key=lambda c: c.rel_l2) if phase else None
        if closest is not None and goal < closest.rel_l2 <= LONGER_FIT_WITHIN * goal:
            iterations = round(LONGER_FIT * options.get("finetune_iterations", ITERATIONS))
            phase.append(measure(Candidate("phase", closest.timesteps, "spiking", "zero",
                                           finetune_iterations=iterations, links=closest.links)))
        return any(c.rel_l2 <= goal for c in phase)

    phase = phase_stream(links=True)
    if phase and not longer_fit(phase) and plain_chains_differ(imported.model):
        longer_fit(phase_stream(links=False))       # fewer spiking layers: a lower floor, more energy
    for rest in REST_VALUES if best() is None else ():
        T = FINETUNE_T[0]
        while T is not None:
            measure(Candidate("finetune", T, first_layer(T, rest), rest))
            T = next_timesteps([c for c in tried if c.method == "finetune" and c.rest == rest], goal, best())
        if best() is not None and best().method == "finetune":
            break                                       # the other rest value only where this one failed
    chosen = best()
    rows = [c.row() for c in tried]
    for row, c in zip(rows, tried):
        row["pareto"] = not any(o.rel_l2 <= c.rel_l2 and o.ratio < c.ratio for o in tried)
    if chosen is None:
        closest = min(tried, key=lambda c: c.rel_l2)
        raise CalibrationError(
            f"{imported.path}: no conversion tried reaches relative error {target_error:g} against the ANN "
            f"(best {closest.rel_l2:.3g}: {closest.method} at T={closest.timesteps}); raise --target-error "
            f"or give more --samples")
    say(f"search: chose {chosen.method} at T={chosen.timesteps} ({chosen.ratio:.3f}x ANN); validating on "
        f"{validation_points} fresh points")
    result = chosen.result
    validating_since = time.perf_counter()
    points = validation_inputs(imported, box, validation_points, np.random.default_rng(seed + 1_000_003))
    total = sum(c.seconds for c in tried)
    result.report = finish_timing(build_report(imported, result, points, {"search": total}, energy_table),
                                  started, validating_since)
    result.report.update(target_error=target_error, energy_model=energy_model, search=rows)
    return result
