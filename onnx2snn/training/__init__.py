"""Training spiking networks with forward-only gradients (randomized forward mode), BPTT the baseline.

    from onnx2snn.training import train_network
    trained = train_network("x2", estimator="rfg-layer", budget_fpe=9000, timesteps=32)
    trained.save("x2.snn.onnx"); print(trained.report["test_rel_l2"])

The trained network is an ordinary artifact (``artifact.py``): every runtime, ``verify`` and the report
work on it.  Modules: ``surrogate`` (the spike function and its derivative rules), ``network`` and
``product`` (the torch simulations), ``estimators`` (BPTT and the forward-only estimators),
``trainer`` (the budgeted loop), ``tasks``/``specification``/``poisson_operator`` (what to fit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from .estimators import ESTIMATORS
from .specification import Specification, load_specification
from .surrogate import Surrogate
from .trainer import TrainConfig, TrainResult, train

__all__ = ["train_network", "TrainedNetwork", "ESTIMATORS", "Surrogate", "TrainConfig"]


@dataclass
class TrainedNetwork:
    artifact: onnx.ModelProto
    report: dict
    result: TrainResult

    def save(self, path: str | Path) -> None:
        from ..saving import atomic_write
        atomic_write(Path(path), lambda tmp: tmp.write_bytes(self.artifact.SerializeToString()))


def train_network(spec: str | Specification, *, estimator: str = "bptt", budget_fpe: float = 9000.0,
                  timesteps: int | None = None, seed: int = 0, directions: int = 1,
                  learning_rate: float | None = None, surrogate: str = "gaussian", sigma: float | None = None,
                  stein_samples: int = 8, progress: Callable[[dict], None] | None = None) -> TrainedNetwork:
    """Train the network of ``spec`` (a shipped task name, a specification file, or a ``Specification``)
    from a seeded initialisation; returns the artifact and a report (``test_rel_l2``, the curve, ...)."""
    from .artifact import deeponet_artifact, mlp_artifact
    spec = load_specification(spec) if isinstance(spec, str) else spec
    task = spec.task
    steps = timesteps or spec.timesteps or 32
    initial = task.initial(steps, readout=spec.readout, leak=spec.leak, seed=seed)
    config = TrainConfig(estimator, budget_fpe, directions, learning_rate,
                         Surrogate(surrogate, sigma or task.sigma, stein_samples), seed)
    result = train(task, initial, config, progress)
    params = task.scaled_params(result.model.to_params())
    from runtimes import spec as artifact_spec
    from ..domain import format_domain
    metadata = {"onnx2snn.training": f"task={task.name};estimator={estimator};budget_fpe={budget_fpe:g};seed={seed}",
                artifact_spec.META_DOMAIN: format_domain({"x": task.box()})}
    if task.kind == "mlp":
        artifact = mlp_artifact(params, metadata)
    else:
        artifact = deeponet_artifact(params, metadata)
    report = {"task": task.name, "estimator": estimator, "budget_fpe": budget_fpe, "timesteps": steps, "seed": seed,
              "directions": directions, "surrogate": {"kind": surrogate, "sigma": sigma or task.sigma},
              "readout": spec.readout, "leak": spec.leak, "test_rel_l2": result.test_rel_l2,
              "fpe_spent": result.fpe, "iterations": result.iterations, "seconds": result.seconds,
              "parameters": int(sum(p.numel() for p in result.model.parameters)),
              "curve": result.curve, **_artifact_check(artifact, task)}
    return TrainedNetwork(artifact, report, result)


def _artifact_check(artifact: onnx.ModelProto, task) -> dict:
    """The saved artifact run by the numpy runtime on the test inputs (checks the artifact, not torch):
    its test error, spikes per sample (a DeepONet's sample: one (function, point) pair) and spike rate per
    IF layer (non-zero events / (neurons × T × samples))."""
    from runtimes.network import SpikingNetwork
    snn = SpikingNetwork(artifact, backend="numpy")
    inputs, target = task.test
    name = next(iter(snn.inputs))
    if task.kind == "mlp":
        x = inputs.numpy()
    else:
        a, c = (t.numpy() for t in inputs)
        x = np.concatenate([np.repeat(a, len(c), axis=0), np.tile(c, (len(a), 1))], axis=1)
    run = snn.run_with_stats({name: x})
    y = next(iter(run.outputs.values())).reshape(target.shape)
    prediction = torch.from_numpy(np.asarray(y, dtype=np.float64))
    if task.kind == "product":
        prediction = prediction / task.scale
    return {"artifact_test_rel_l2": task.test_error(prediction),
            "spikes_per_sample": sum(c.events for c in run.spikes.values()) / len(x),
            "spike_rate": {layer: c.rate for layer, c in run.spikes.items()}}
