"""What every training script shares and needs no deep-learning framework for (numpy only), so the
TensorFlow and JAX scripts can use it from their own virtual environments."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def rel_l2(y: np.ndarray, ref: np.ndarray) -> float:
    """``||y - ref||_2 / ||ref||_2`` over all entries."""
    y, ref = np.asarray(y, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


class Log:
    """Prints with the elapsed wall time."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, msg: str) -> None:
        print(f"[{self.elapsed():7.1f}s] {msg}", flush=True)


def load_exact():
    """``onnx2snn/exact.py`` by path (numpy + scipy only), so a venv needs no onnx2snn install."""
    spec = importlib.util.spec_from_file_location("onnx2snn_exact", HERE.parent / "onnx2snn" / "exact.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
