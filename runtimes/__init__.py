"""Execute onnx2snn spiking artifacts: the artifact spec, the numpy reference runtime and backends.

    snn = runtimes.load("model.snn.onnx", backend="numpy")
    y = snn.run({"x": x})      # decoded outputs, dict by output name
"""

from .errors import ArtifactError, InputError, Onnx2SnnError

_LAZY = {"load": ".network", "SpikingNetwork": ".network", "BACKENDS": ".network", "available_backends": ".network",
         "RunResult": ".numpy_ref", "SpikeCounts": ".numpy_ref"}


def __getattr__(name):
    """The runtime's names load on first use: importing ``runtimes.errors`` (the CLI does) loads no onnx
    and no numba."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


__all__ = ["load", "SpikingNetwork", "BACKENDS", "available_backends", "RunResult", "SpikeCounts",
           "Onnx2SnnError", "ArtifactError", "InputError"]
