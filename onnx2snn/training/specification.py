"""What ``onnx2snn train SPEC`` trains: a shipped task name, or a JSON specification file.

A specification file (JSON) names a shipped task or a regression data set, and may change the network::

    {"task": "x2"}                                    a shipped task (``tasks.TASKS``)
    {"data": "points.npz", "widths": [64, 64]}        x_train [N, n], y_train [N, m], x_test, y_test
    optional: "widths" (hidden widths; MLP tasks), "readout" ("analog" | "rate"), "leak" (λ ∈ (0, 1]),
              "timesteps", "sigma" (the surrogate's width)

Relative paths inside the file are relative to the file.  Values given on the command line win.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtimes.errors import Onnx2SnnError

from .tasks import TASKS, Task, as_tensor, load_task

KEYS = {"task", "data", "widths", "readout", "leak", "timesteps", "sigma"}


class SpecificationError(Onnx2SnnError):
    pass


@dataclass
class Specification:
    task: Task
    readout: str = "analog"
    leak: float = 1.0
    timesteps: int | None = None


def load_specification(text: str) -> Specification:
    """A task name (``TASKS``) or the path of a JSON specification file."""
    if text in TASKS:
        return Specification(load_task(text))
    path = Path(text)
    if not path.is_file():
        raise SpecificationError(f"{text}: neither a shipped task ({', '.join(TASKS)}) nor a specification file")
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpecificationError(f"{text}: not a JSON specification ({e})") from None
    if not isinstance(spec, dict) or ("task" in spec) == ("data" in spec):
        raise SpecificationError(f"{text}: a specification is a JSON object with exactly one of 'task' or 'data'")
    unknown = set(spec) - KEYS
    if unknown:
        raise SpecificationError(f"{text}: unknown key(s) {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(sorted(KEYS))}")
    if "task" in spec:
        if spec["task"] not in TASKS:
            raise SpecificationError(f"{text}: unknown task {spec['task']!r}; shipped: {', '.join(TASKS)}")
        task = load_task(spec["task"])
    else:
        task = _data_task(path.parent / spec["data"], text)
    if "widths" in spec:
        widths = spec["widths"]
        if task.kind != "mlp" or not (isinstance(widths, list) and widths
                                      and all(isinstance(w, int) and w > 0 for w in widths)):
            raise SpecificationError(f"{text}: 'widths' is a list of positive hidden widths (MLP tasks only)")
        task.widths = [task.widths[0], *widths, task.widths[-1]]
    if "sigma" in spec:
        task.sigma = float(spec["sigma"])
    readout = spec.get("readout", "analog")
    leak = float(spec.get("leak", 1.0))
    if readout not in ("analog", "rate") or not 0 < leak <= 1:
        raise SpecificationError(f"{text}: 'readout' is analog or rate and 'leak' lies in (0, 1]")
    timesteps = spec.get("timesteps")
    if timesteps is not None and not (isinstance(timesteps, int) and timesteps > 0):
        raise SpecificationError(f"{text}: 'timesteps' is a positive integer")
    return Specification(task, readout, leak, timesteps)


def _data_task(path: Path, text: str) -> Task:
    try:
        with np.load(path) as data:
            arrays = {k: np.asarray(data[k], dtype=np.float64) for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, ValueError, KeyError) as e:
        raise SpecificationError(f"{text}: data file {path}: needs arrays x_train, y_train, x_test, "
                                 f"y_test ({e})") from None
    for k, a in arrays.items():
        if a.ndim == 1:
            arrays[k] = a[:, None]
        if arrays[k].ndim != 2 or not np.all(np.isfinite(arrays[k])):
            raise SpecificationError(f"{text}: data {k} must be finite, [N] or [N, n]")
    n_in, n_out = arrays["x_train"].shape[1], arrays["y_train"].shape[1]
    return Task(path.stem, "mlp", [n_in, 64, 64, 64, n_out],
                (as_tensor(arrays["x_train"]), as_tensor(arrays["y_train"])),
                (as_tensor(arrays["x_test"]), as_tensor(arrays["y_test"])), 0.5)
