"""Run one artifact on every installed backend and compare each with the numpy reference.

What "agree" means.  All backends compute the same IF neurons from the same thresholds with the same
comparisons, so their spikes are identical as long as the synaptic currents are.  The currents can differ
in the last bits, because MatMul and ReduceSum add in a different order (BLAS/MLAS blocking, numpy's
pairwise sums); a spike then differs only where a membrane lands within that rounding of a threshold,
which is rare and moves one event by one step (reset by subtraction makes the neuron catch up).  Hence:

* spike counts: per IF node, |events - events_numpy| <= ``spike_rtol`` · events_numpy (0.1 %), and the
  same neuron, batch and step counts;
* decoded outputs: per output, relative L2 distance ||y - y_numpy|| / ||y_numpy|| <= ``rtol`` (1e-4), and
  the same shape and dtype.  Without any flipped spike the distance is float rounding (about 1e-7 in
  float32); one flipped spike changes one unit's decoded value by θ·w/T, a few 1e-5 of the output norm
  on a batch of a few hundred points; a semantic error (wrong reset, threshold or bias) moves outputs by
  the quantisation step θ/T of every unit, orders of magnitude above ``rtol``.

A delta-coded artifact (a stream) must agree exactly: its arithmetic is specified (``spec``,
``stream_math``), so every backend computes the same activations bit for bit; any difference in an
output, an IF node's events or its events per point is a mismatch.

``VerifyReport.ok`` is true when every backend that ran agrees; per-backend numbers are in
``VerifyReport.backends``.  Backends that are not installed are listed in ``skipped``.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from .errors import ArtifactError, Onnx2SnnError
from .loading import load_onnx
from .network import BACKENDS, SpikingNetwork, available_backends
from .numpy_ref import RunResult
from .stream import is_delta

RTOL = 1e-4
SPIKE_RTOL = 1e-3


@dataclass
class BackendCheck:
    """One backend against numpy: per output the relative L2 distance and the largest absolute
    difference, per IF node the events and their difference from numpy's."""

    backend: str
    ok: bool
    seconds: float = 0.0
    rel_l2: dict[str, float] = field(default_factory=dict)
    max_abs: dict[str, float] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    event_diff: dict[str, int] = field(default_factory=dict)
    exact_spikes: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    ok: bool
    timesteps: int
    rtol: float
    spike_rtol: float
    reference_seconds: float
    reference_events: dict[str, int]
    backends: dict[str, BackendCheck] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """A short human-readable summary, one line per backend (for the CLI to print)."""
        out = [f"numpy (reference): {self.reference_seconds:.3f} s, "
               f"{sum(self.reference_events.values())} events, T={self.timesteps}"]
        for name, check in self.backends.items():
            rel = max(check.rel_l2.values(), default=0.0)
            diff = sum(abs(d) for d in check.event_diff.values())
            out.append(f"{name}: {'ok' if check.ok else 'MISMATCH'}, {check.seconds:.3f} s, max rel L2 {rel:.2e}, "
                       f"{diff} event(s) differ" + (f"; {'; '.join(check.problems)}" if check.problems else ""))
        out += [f"{name}: skipped (not installed)" for name in self.skipped]
        return out


def verify(model: onnx.ModelProto | str | os.PathLike, inputs: dict[str, np.ndarray] | np.ndarray,
           backends: list[str] | tuple[str, ...] | None = None, timesteps: int | None = None,
           rtol: float = RTOL, spike_rtol: float = SPIKE_RTOL, options: dict[str, dict] | None = None) -> VerifyReport:
    """Run ``model`` on numpy and on ``backends`` (default: every installed one) with the same inputs.

    ``options`` maps a backend name to keyword options of its runtime (e.g. ``{"snntorch": {"device":
    "cuda"}}``).  A requested backend that is not installed is skipped; one that fails to run counts as a
    mismatch with its error in ``problems``.  snnTorch also runs on CUDA where a GPU is available (``_runs``)."""
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model, ArtifactError)
    options = options or {}
    wanted = [b for b in (backends if backends is not None else BACKENDS) if b != "numpy"]
    unknown = [b for b in wanted if b not in BACKENDS]
    if unknown:
        raise ArtifactError(f"unknown backend(s) {unknown}; available: {', '.join(BACKENDS)}")
    installed = set(available_backends())
    stream = is_delta(model)
    if stream:                           # no onnxruntime form (runtimes.stream); exact agreement (docstring)
        installed.discard("onnxruntime")
        rtol = spike_rtol = 0.0
    reference_net = SpikingNetwork(model, "numpy", timesteps=timesteps)
    feeds = reference_net.check_inputs(inputs)
    started = time.perf_counter()
    reference = reference_net.run_with_stats(feeds)
    report = VerifyReport(ok=True, timesteps=reference_net.timesteps, rtol=rtol, spike_rtol=spike_rtol,
                          reference_seconds=time.perf_counter() - started,
                          reference_events={k: v.events for k, v in reference.spikes.items()},
                          skipped=[b for b in wanted if b not in installed])
    for label, backend, backend_options in _runs(wanted, installed, options):
        check = BackendCheck(backend=label, ok=True)
        try:
            net = SpikingNetwork(model, backend, timesteps=reference_net.timesteps, **backend_options)
            started = time.perf_counter()
            result = net.run_with_stats(feeds)
            check.seconds = time.perf_counter() - started
        except Onnx2SnnError as e:
            check.ok, check.problems = False, [str(e)]
        else:
            _compare(reference, result, check, rtol, spike_rtol)
        report.backends[label] = check
        report.ok &= check.ok
    return report


def _runs(wanted: list[str], installed: set[str], options: dict[str, dict]) -> list[tuple[str, str, dict]]:
    """(label, backend, runtime options) of each run: every wanted installed backend, and snnTorch once
    more on CUDA ("snntorch-cuda") where a GPU is available and no device was asked for."""
    runs = [(b, b, options.get(b, {})) for b in wanted if b in installed]
    if "snntorch" in installed and "snntorch" in wanted and "device" not in options.get("snntorch", {}):
        import torch
        if torch.cuda.is_available():
            runs.append(("snntorch-cuda", "snntorch", {**options.get("snntorch", {}), "device": "cuda"}))
    return runs


def _compare(reference: RunResult, result: RunResult, check: BackendCheck, rtol: float, spike_rtol: float) -> None:
    for name, expected in reference.outputs.items():
        got = result.outputs.get(name)
        if got is None:
            check.problems.append(f"output '{name}' missing")
            continue
        got, expected = np.asarray(got), np.asarray(expected)
        if got.shape != expected.shape or got.dtype != expected.dtype:
            check.problems.append(f"output '{name}': {got.dtype}{list(got.shape)} instead of "
                                  f"{expected.dtype}{list(expected.shape)}")
            continue
        diff = got.astype(np.float64) - expected.astype(np.float64)
        norm = float(np.linalg.norm(expected.astype(np.float64)))
        check.rel_l2[name] = float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))
        check.max_abs[name] = float(np.max(np.abs(diff))) if diff.size else 0.0
        if not np.isfinite(check.rel_l2[name]) or check.rel_l2[name] > rtol:
            check.problems.append(f"output '{name}': relative L2 {check.rel_l2[name]:.2e} > {rtol:.0e}")
    exact = True
    for node, expected in reference.spikes.items():
        got = result.spikes.get(node)
        if got is None:
            check.problems.append(f"IF node '{node}': no spike counts")
            exact = False
            continue
        check.events[node], check.event_diff[node] = got.events, got.events - expected.events
        exact &= got.events == expected.events
        per_row = getattr(expected, "per_row", None)
        if per_row is not None and not np.array_equal(getattr(got, "per_row", None), per_row):
            check.problems.append(f"IF node '{node}': events per point differ")
        if abs(got.events - expected.events) > spike_rtol * expected.events:
            check.problems.append(f"IF node '{node}': {got.events} events vs {expected.events} "
                                  f"(more than {spike_rtol:.1%} apart)")
        if (got.neurons, got.batch, got.timesteps) != (expected.neurons, expected.batch, expected.timesteps):
            check.problems.append(f"IF node '{node}': neurons/batch/T {got.neurons}/{got.batch}/{got.timesteps} "
                                  f"vs {expected.neurons}/{expected.batch}/{expected.timesteps}")
    check.exact_spikes = exact
    check.ok = not check.problems
