"""Conversion options (the CLI's ``convert`` flags) and their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runtimes.spec import MAX_PHASE_DIGITS

from ..errors import CalibrationError
from .finetune import ANALOG_PER_ITERATION, ITERATIONS
from .thresholds import parse_threshold

METHODS = ("none", "light", "potential", "advanced", "refit", "finetune", "forward")
DEFAULT_MAX_PIECES = 128
PROMISED_ERROR = {32: 5e-3, 128: 2e-3}    # default conversion, relative L2 vs the ANN on fresh points
TOLERANCE_MARGIN = 0.8                   # of it spent on the calibration points
CODINGS = ("rate", "phase", "delta")
GATES = ("auto", "static", "spiking")


@dataclass
class ConversionOptions:
    """``pieces``: 1 = one signed neuron per unit (the papers' method), K > 1 = PWL expansion with at most
    K pieces per unit, "auto" = PWL with pieces chosen per unit.  ``calibration``: methods combined with
    '+', None = ``default_methods``."""

    timesteps: int = 32
    pieces: int | str = "auto"
    calibration: tuple[str, ...] | None = None
    threshold: str = "max"
    neuron: str = "round"
    readout: str = "analog"
    seed: int = 0
    v0: float | None = None            # initial potential as a fraction of θ (None: 0 round, 1/2 floor)
    shift: bool = False                # Deng & Gu's θ/(2T) bias shift (for floor neurons)
    readout_enlargement: float = 1.5   # spiking readout: θ_out = enlargement × calibrated output range
    tolerance: float | None = None     # --pieces auto: relative output error budget (calibration/budget.py)
    finetune_iterations: int = ITERATIONS   # quantised Adam steps of the end-to-end calibration (finetune.py)
    first_layer: str = "spiking"       # "analog": computed once per point, encoded into the next (structure.py)
    rest: str = "zero"                 # one neuron per unit: silent at "zero" or its "typical" value (rest.py)
    spike_penalty: float = 0.0         # finetune: weight λ of synaptic operations per ANN MAC in the loss
    coding: str = "rate"               # "phase": weighted spikes, T binary digits per unit (runtimes.spec)
    links: bool = True                 # spiking chains continue through links (linked.py); False: plain chains
    gates: str = "auto"                # static gates computed once, "spiking", or "auto": chosen (gates.py)
    methods: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self):
        if not isinstance(self.timesteps, int) or self.timesteps <= 0:
            raise CalibrationError(f"timesteps must be a positive integer, got {self.timesteps!r}")
        if self.coding == "phase" and self.pieces == "auto":      # the phase code's one neuron per unit
            self.pieces = 1
        if self.pieces != "auto" and (not isinstance(self.pieces, int) or self.pieces < 1):
            raise CalibrationError(f"pieces must be a positive integer or 'auto', got {self.pieces!r}")
        if self.neuron not in ("round", "floor"):
            raise CalibrationError(f"unknown neuron {self.neuron!r}; use round or floor")
        if self.readout not in ("analog", "spiking"):
            raise CalibrationError(f"unknown readout {self.readout!r}; use analog or spiking")
        methods = self.calibration if self.calibration is not None else self.default_methods
        if isinstance(methods, str):
            methods = tuple(methods.split("+"))
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise CalibrationError(f"unknown calibration method(s) {unknown}; use {'+'.join(METHODS)}")
        self.methods = tuple(m for m in methods if m != "none")
        if "forward" in self.methods:
            if self.pieces != 1 or self.methods[-1] != "forward" or "finetune" in self.methods:
                raise CalibrationError("calibration 'forward' (forward-only fine-tuning) needs --pieces 1, comes "
                                       "last and replaces finetune (e.g. advanced+forward)")
            if self.methods == ("forward",):
                self.methods = ("advanced", "forward")
        parse_threshold(self.threshold)
        if self.tolerance is None:
            self.tolerance = default_tolerance(self.timesteps)
        if not 0 < self.tolerance < 1:
            raise CalibrationError(f"tolerance must be in (0, 1), got {self.tolerance}")
        if not isinstance(self.finetune_iterations, int) or self.finetune_iterations < 1:
            raise CalibrationError(f"finetune iterations must be a positive integer, "
                                   f"got {self.finetune_iterations!r}")
        if self.first_layer not in ("spiking", "analog"):
            raise CalibrationError(f"unknown first layer {self.first_layer!r}; use spiking or analog")
        if self.rest not in ("zero", "typical"):
            raise CalibrationError(f"unknown rest value {self.rest!r}; use zero or typical")
        if not self.spike_penalty >= 0:
            raise CalibrationError(f"spike penalty must be >= 0, got {self.spike_penalty}")
        if self.gates not in GATES:
            raise CalibrationError(f"unknown gates {self.gates!r}; use {' or '.join(GATES)}")
        if self.coding not in CODINGS:
            raise CalibrationError(f"unknown coding {self.coding!r}; use {' or '.join(CODINGS)}")
        if self.coding == "rate" and self.neuron == "floor" and self.pieces != 1:
            raise CalibrationError(f"--neuron floor is the papers' neuron of one neuron per unit (--pieces 1); the "
                                   f"piecewise-linear expansion (--pieces {self.pieces}) is built of rounding neurons")
        if self.coding == "phase":
            self._check_phase()
        if self.coding == "delta":
            self._check_delta()
        if self.readout_enlargement <= 0:
            raise CalibrationError(f"readout enlargement must be positive, got {self.readout_enlargement}")

    def _check_phase(self) -> None:
        """The phase code is built for one symmetric rounding neuron per unit, fitted end to end; its
        initial potential is not a calibration knob (it enters once, not every step)."""
        clashes = [flag for flag, clash in [("--pieces " + str(self.pieces), self.pieces != 1),
                                            ("--neuron floor", self.neuron != "round"),
                                            ("--readout spiking", self.readout != "analog"),
                                            ("--rest typical", self.rest != "zero"),
                                            ("--spike-penalty", self.spike_penalty != 0),
                                            ("--calibration forward", "forward" in self.methods),
                                            ("--calibration potential", "potential" in self.methods),
                                            ("--threshold mse", self.threshold.startswith("mse")),
                                            ("--shift", self.shift), ("--v0", self.v0 is not None)] if clash]
        if clashes:
            raise CalibrationError(f"--coding phase is one rounding neuron per unit with an analog readout; it "
                                   f"does not take {', '.join(clashes)}")
        if self.timesteps > MAX_PHASE_DIGITS:
            raise CalibrationError(f"--coding phase sends T binary digits per unit: T = {self.timesteps} is "
                                   f"beyond float precision; use T <= {MAX_PHASE_DIGITS} (8 digits ~ a rate code "
                                   f"of 128 steps)")

    def _check_delta(self) -> None:
        """The delta code (``onnx2snn.delta``) keeps the ANN's own layers and chooses only each layer's event
        size θ (for ``--target-error``) and the neuron (round: a = 1/2, floor: a = 1); no other knob applies."""
        clashes = [flag for flag, clash in [("--pieces " + str(self.pieces), self.pieces != "auto"),
                                            ("--calibration", self.calibration is not None),
                                            ("--threshold " + self.threshold, self.threshold != "max"),
                                            ("--readout spiking", self.readout != "analog"),
                                            ("--first-layer analog", self.first_layer != "spiking"),
                                            ("--rest typical", self.rest != "zero"),
                                            ("--spike-penalty", self.spike_penalty != 0),
                                            ("--shift", self.shift), ("--v0", self.v0 is not None)] if clash]
        if clashes:
            raise CalibrationError(f"--coding delta streams the ANN's own layers and chooses only their event "
                                   f"sizes; it does not take {', '.join(clashes)}")

    @property
    def end_to_end(self) -> bool:
        """Whether the layers are fitted end to end (``finetune.py``): by back-propagation (finetune) or by
        forward-only gradients (forward)."""
        return "finetune" in self.methods or "forward" in self.methods

    @property
    def gradient(self) -> str:
        """The end-to-end fit's gradient: "forward" (node perturbation, ``--calibration forward``) or
        "backprop"."""
        return "forward" if "forward" in self.methods else "backprop"

    @property
    def finetune_analog_iterations(self) -> int:
        """The noisy analog steps of each of the two step-size rules that precede the quantised steps
        (``finetune.py``, phase 1)."""
        return ANALOG_PER_ITERATION * self.finetune_iterations

    @property
    def default_methods(self) -> tuple[str, ...]:
        """The best calibration for ``pieces`` (benchmarks/results/calibration.md, accuracy.md): the
        end-to-end fit for one neuron per unit, the closed-form refit for the PWL expansion."""
        return ("finetune",) if self.pieces == 1 else ("refit",)

    @property
    def max_pieces(self) -> int:
        return DEFAULT_MAX_PIECES if self.pieces == "auto" else int(self.pieces)


def default_tolerance(timesteps: int) -> float:
    """The default error budget of ``--pieces auto``: τ(T) = 0.8·5e-3·(32/T)^γ, γ = log(5/2)/log 4 ≈ 0.66.

    The accuracy the default conversion promises (``PROMISED_ERROR``: 5e-3 at T=32, 2e-3 at T=128, relative
    L2 vs the ANN on fresh points), interpolated as a power law in T, of which 80 % is spent on the
    calibration points where the budget is measured: the rest covers the gap to fresh points (on wave and
    diffusion-reaction, 5-10 %) and the last auto pass stopping slightly above τ.  A unit's rounding error
    falls as 1/(K·T) and its spikes grow as K·T, so spikes scale as 1/τ ∝ T^γ: 4x the steps buy 2.5x lower
    error for 2.5x the spikes."""
    (t1, e1), (t2, e2) = sorted(PROMISED_ERROR.items())
    gamma = np.log(e1 / e2) / np.log(t2 / t1)
    return float(TOLERANCE_MARGIN * e1 * (t1 / timesteps) ** gamma)


def promised_error(options: ConversionOptions) -> float:
    """The relative L2 error vs the ANN on fresh points that a conversion with ``options`` aims for, above
    which the CLI warns: with ``--pieces auto`` the tolerance its budget used (``options.tolerance``,
    default ``default_tolerance``: 4e-3·(32/T)^0.66), otherwise the default conversion's promise
    (``PROMISED_ERROR``) scaled the same way, 5e-3·(32/T)^0.66 = ``default_tolerance`` / 0.8 (5e-3 at
    T = 32, 2e-3 at T = 128)."""
    if options.pieces == "auto":
        return float(options.tolerance)
    return default_tolerance(options.timesteps) / TOLERANCE_MARGIN
