"""onnx2snn's ON/OFF NIR exports run by sinabs (``sinabs.from_nir``), in this interpreter or another one.

sinabs (3.1.3) pins nir 1.0.4 and nirtorch 2.0.2, older than the nir onnx2snn writes with, so it usually
lives in a virtual environment of its own: ``run_sinabs(..., python=PATH)`` runs this file there as a
script (it imports only numpy, torch, nir and sinabs), exchanging the ``.nir`` file and ``.npy`` arrays.

What sinabs runs.  ``from_nir`` maps Affine to a float32 ``torch.nn.Linear`` and IF to ``IAFSqueeze``
with spike_threshold θ = v_threshold and min_v_mem = -θ, ignoring ``r`` and ``v_reset``; nirtorch runs
the graph feed-forward on [points·T, d] tensors (the static input repeated over the T steps).  Per IF
neuron and step t::

    v = v(t-1) + x(t)
    n(t) = trunc(v/θ) where v > 0, else 0      spike="multi" (sinabs's default, MultiSpike)
    n(t) = 1 where v >= θ, else 0              spike="single" (SingleSpike: one spike per step, as NIR's IF)
    v(t) = max(v - n(t)·θ, -θ)                 subtractive reset, membrane clipped at -θ;  v(0) = 0

The decoded output is the mean over the T steps of each Output node.  NIR's IF emits at most one spike per
step; with MultiSpike an ON/OFF neuron driven above θ per step fires several times, which the artifact's
neuron (one spike per step: a rate that saturates at 1) never does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SPIKES = ("single", "multi")
POINTS_PER_CHUNK = 8          # points per sinabs call: [8·T, width] tensors per node (all are kept)


def sinabs_outputs(path, x: np.ndarray, timesteps: int, spike: str = "single") -> dict[str, np.ndarray]:
    """Run the NIR file ``path`` in sinabs (this interpreter) on the static input ``x`` [points, d] for
    ``timesteps`` steps: each Output node's mean over the steps [points, d'], and ``"spikes:" + name`` the
    spike count of each IF node over all points and steps (module docstring)."""
    import nir
    import sinabs
    import torch
    from sinabs.activation import MultiSpike, SingleSpike
    from sinabs.nir import from_nir

    if spike not in SPIKES:
        raise ValueError(f"unknown spike function {spike!r}; use {' or '.join(SPIKES)}")
    graph = nir.read(str(path))
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    inputs = [name for name, kind in kinds.items() if kind == "Input"]
    if len(inputs) != 1:
        raise ValueError(f"{path}: sinabs (nirtorch 2.0) runs graphs with one Input node, this one has {len(inputs)}")
    outputs = [name for name, kind in kinds.items() if kind == "Output"]
    neurons = [name for name, kind in kinds.items() if kind == "IF"]
    model = from_nir(graph, num_timesteps=timesteps)
    for name in neurons:
        getattr(model, name).spike_fn = SingleSpike if spike == "single" else MultiSpike
    torch.set_num_threads(1)
    decoded = {name: [] for name in outputs}
    counts = {name: 0.0 for name in neurons}
    with torch.no_grad():
        for start in range(0, len(x), POINTS_PER_CHUNK):
            chunk = torch.as_tensor(np.asarray(x[start:start + POINTS_PER_CHUNK], np.float32))
            sinabs.reset_states(model)
            steps = chunk[:, None, :].expand(-1, timesteps, -1).reshape(-1, chunk.shape[1])
            _, state = model(steps)
            for name in outputs:
                value = state.cache[name]
                decoded[name].append(value.reshape(len(chunk), timesteps, -1).mean(1).double().numpy())
            for name in neurons:
                counts[name] += float(state.cache[name].sum())
    result = {name: np.concatenate(parts) for name, parts in decoded.items()}
    result.update({f"spikes:{name}": np.asarray(count) for name, count in counts.items()})
    return result


def run_sinabs(path, x: np.ndarray, timesteps: int, spike: str = "single", python: str | None = None,
               timeout: float | None = None) -> dict[str, np.ndarray]:
    """``sinabs_outputs`` in this interpreter (``python`` None) or in the interpreter ``python`` (a
    subprocess running this file); a failure raises ``ArtifactError`` with sinabs's last error line."""
    from .errors import ArtifactError
    if python is None:
        try:
            return sinabs_outputs(path, x, timesteps, spike)
        except ImportError as e:
            raise ArtifactError(f"sinabs is not importable here ({e}); give the python of an environment "
                                f"that has it (pip install sinabs)") from None
        except ValueError as e:
            raise ArtifactError(str(e)) from None
    with tempfile.TemporaryDirectory() as folder:
        inputs, out = Path(folder) / "x.npy", Path(folder) / "out.npz"
        np.save(inputs, np.asarray(x))
        command = [python, str(Path(__file__).resolve()), str(path), str(inputs), str(out), str(timesteps), spike]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        env.pop("PYTHONPATH", None)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ArtifactError(f"sinabs run of {path} with {python}: {e}") from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise ArtifactError(f"sinabs run of {path} with {python}: {lines[-1]}")
        with np.load(out) as arrays:
            return {name: arrays[name] for name in arrays.files}


def main(argv: list[str]) -> int:
    """``python nir_sinabs.py MODEL.nir X.npy OUT.npz T single|multi``: ``sinabs_outputs`` saved to OUT."""
    path, inputs, out, timesteps, spike = argv
    result = sinabs_outputs(path, np.load(inputs), int(timesteps), spike)
    np.savez(out, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
