"""Shared test set-up: one BLAS/torch thread, fixture paths."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = ROOT / "models"


def fixture_models() -> list[Path]:
    return sorted(FIXTURES.glob("*.onnx"))


@pytest.fixture
def tanh_model() -> Path:
    return FIXTURES / "torch_tanh_gemm.onnx"
