"""Gates computed once per point or spiking: the converter chooses by accuracy and energy (``--gates``).

A layer computed only from the inputs whose output multiplies a spiking signal (the modified MLP's gates
U = tanh(x·W_u), V = tanh(x·W_v) in H' = (1 - Z)·U + Z·V) can be

* ``static``: computed once per point; the products with Z are links (static coefficients), so the
  spiking chain runs on through them (``linked.py``, ``STATIC_GATE``);
* ``spiking``: a directly encoded spiking layer like the first; each product of two spiking signals is
  then evaluated on decoded values, the layer after it directly encoded (the network runs in stages,
  ``calibration/staged.py``), and with no readout left the budget prices every unit at the graph outputs
  through the analog tail (``calibration/budget.tail_sensitivities``).

With ``--gates auto`` (the default) and ``--pieces auto`` (rate code, links), where the two analyses differ
both are converted and measured on *selection* points drawn with their own seed (neither calibration nor
validation points): relative L2 error e_sel against the ANN and energy ratio ρ on ``energy.DEFAULT_MODEL``.
Of the variants with e_sel ≤ the accuracy the conversion promises (``calibration.options.promised_error``),
the one of least ρ is kept; where neither meets it, the one of least e_sel.  Other codes keep the gates
static: fitted end to end the spiking variant converts but is no better (modified MLP fixture, 512
calibration points, 50 fit iterations, 256 fresh points: ``--pieces 1`` T = 32 5.1e-2 at 3.39x the ANN
against 2.8e-2 at 4.00x static; ``--coding phase`` T = 6 5.6e-2 at 1.00x against 3.3e-2 at 0.58x).  The report's
``gates_choice`` records both candidates and the choice; its ``activations`` say which activations spike.
"""

from __future__ import annotations

import numpy as np

from .calibration.options import promised_error
from .energy import DEFAULT_MODEL
from .inputs import validation_inputs
from .report import build_report
from .structure import analyse

VARIANTS = ("static", "spiking")
SELECTION_POINTS = 1024
SELECTION_SEED_OFFSET = 3_000_017


def gates_differ(model) -> bool:
    """Whether spiking gates change which activations spike (the model has static gates)."""
    return [l.name for l in analyse(model).layers] != [l.name for l in analyse(model, static_gates=False).layers]


def choose_gates(measured: dict[str, tuple[float, float]], goal: float) -> str:
    """The variant kept from {variant: (e_sel, ρ)}: of those with e_sel ≤ ``goal`` the least ρ, else the least
    e_sel (module docstring); ties go to the first in ``VARIANTS`` order."""
    meeting = [v for v in VARIANTS if v in measured and measured[v][0] <= goal]
    if meeting:
        return min(meeting, key=lambda v: measured[v][1])
    return min((v for v in VARIANTS if v in measured), key=lambda v: measured[v][0])


def measure_variants(imported, box, results: dict, seed: int, energy_table: str | None = None
                     ) -> dict[str, tuple[float, float]]:
    """{variant: (e_sel, ρ on ``DEFAULT_MODEL``)} of the conversions ``results`` on the selection points."""
    points = validation_inputs(imported, box, SELECTION_POINTS, np.random.default_rng(seed + SELECTION_SEED_OFFSET))
    measured = {}
    for variant, result in results.items():
        report = build_report(imported, result, points, {}, energy_table)
        measured[variant] = (report["validation"]["rel_l2_snn_vs_ann"], report["energy"][DEFAULT_MODEL]["ratio"])
    return measured


def gates_report(measured: dict[str, tuple[float, float]], chosen: str, options) -> dict:
    """The report's ``gates_choice``: the choice, the accuracy goal, each variant's selection error and energy."""
    return {"chosen": chosen, "goal": promised_error(options), "energy_model": DEFAULT_MODEL,
            "selection_points": SELECTION_POINTS,
            "candidates": {v: {"rel_l2_selection": e, "energy_ratio": r} for v, (e, r) in measured.items()}}
