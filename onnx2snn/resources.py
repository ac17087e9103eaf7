"""Memory and time that a conversion or a run will take, estimated before the work starts.

Where memory grows with T (measured: peak RSS, one thread, float32, ``-q``; growth between two T):

* ``convert``: the layer-by-layer calibration keeps each spiking layer's decoded series u(t) [T, N_l, n_l]
  on the calibration points (the ``--pieces auto`` passes keep theirs too, finetune its batch's), and the
  next layer's current z(t) is one product of that series.  Growth per step and calibration point, per
  unit of the spiking layers, in values of the model's dtype: torch_tanh_gemm (2-16-16-1) 2.44 with
  ``--pieces auto`` (512 and 2,048 points, T = 32 → 2,048 and 256 → 768), 1.75-1.95 with ``--pieces 1``
  (finetune); poisson1d (4×100) 1.16 (``auto``, 256 points, T = 128 → 640).  So, with c =
  ``CALIBRATION_COPIES`` = 2.5 (the largest measured, rounded up),

      bytes ≈ c · T · itemsize · Σ_l N_l·n_l          (N_l: layer l's calibration rows, n_l its units)

  At ``-T 100000`` on 4096 points of the 2-16-16-1 fixture that is 131 GB: the MemoryError of issue 24
  after two minutes.  ``check_calibration_memory`` refuses where it exceeds ``memory_bytes``.
* ``run`` (and the validation run of ``convert``): no runtime keeps per-step values.  The numpy runtime
  holds each chunk's membranes and running sums (chunk rows × dense slots) and the outputs; on a 2-16-16-1
  artifact, 4,096 points, peak RSS was 190 MB at T = 1,000 and at T = 10,000 (428 neurons, and 32).
  snnTorch and onnxruntime likewise carry state and sums across steps.  Nothing to refuse for T there:
  only the time grows, T · points · live neurons · ``UPDATE_SECONDS`` (numpy runtime, one thread:
  0.26 ns per neuron update measured with 428 neurons, 0.5 ns with 32, where the products between the
  layers weigh more; 4,096 points × T = 10,000: 4.6 s and 0.67 s), which ``run_seconds`` estimates for a
  progress line.
"""

from __future__ import annotations

import os

from .errors import ResourceError

CALIBRATION_COPIES = 2.5       # values kept per step, calibration point and unit (module docstring)
UPDATE_SECONDS = 0.5e-9        # one neuron update of the numpy runtime, one thread (upper of the measured)


def memory_bytes() -> int:
    """Memory this process may use: psutil's available memory where psutil is installed, else the
    machine's physical memory (``SC_PAGE_SIZE`` × ``SC_PHYS_PAGES``); 0 where neither can be read."""
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def calibration_bytes(rows_and_units: list[tuple[int, int]], timesteps: int, itemsize: int) -> float:
    """c · T · itemsize · Σ_l N_l·n_l for spiking layers of (calibration rows N_l, units n_l)."""
    return CALIBRATION_COPIES * timesteps * itemsize * sum(rows * units for rows, units in rows_and_units)


def check_calibration_memory(rows_and_units: list[tuple[int, int]], timesteps: int, itemsize: int) -> None:
    """``ResourceError`` where the calibration's series (``calibration_bytes``) cannot fit in
    ``memory_bytes``, saying the largest T that would."""
    need, have = calibration_bytes(rows_and_units, timesteps, itemsize), memory_bytes()
    if have and need > have:
        rows = max(rows for rows, _ in rows_and_units)
        fits = int(timesteps * have / need)
        raise ResourceError(f"calibrating at T={timesteps} on {rows} points would need about {_gb(need)} of "
                            f"memory (the spike trains of every layer over T steps) and {_gb(have)} is "
                            f"available; give a smaller -T (at most about {fits} here) or fewer --samples")


def run_seconds(points: int, timesteps: int, neurons: int) -> float:
    """Estimated seconds of a numpy-runtime run: T · points · live neurons · ``UPDATE_SECONDS``."""
    return timesteps * points * neurons * UPDATE_SECONDS


def _gb(count: float) -> str:
    return f"{count / 1e9:.1f} GB"
