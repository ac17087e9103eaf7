"""Shared test set-up: one BLAS/torch thread, fixture paths, fresh points of the architecture fixtures."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = ROOT / "models"


def fixture_models() -> list[Path]:
    return sorted(FIXTURES.glob("*.onnx"))


@pytest.fixture
def tanh_model() -> Path:
    return FIXTURES / "torch_tanh_gemm.onnx"


def architecture_points(n: int = 256, seed: int = 5) -> dict[str, np.ndarray]:
    """Fresh points of the architecture fixtures (residual, modified MLP, LayerNorm, SIREN: input ``x`` of
    (x, t) on the domain [-1, 1] x [0, 1] that ``make_torch_fixtures.py`` records), uniform, float32."""
    rng = np.random.default_rng(seed)
    return {"x": (np.array([-1.0, 0.0]) + np.array([2.0, 1.0]) * rng.random((n, 2))).astype(np.float32)}
