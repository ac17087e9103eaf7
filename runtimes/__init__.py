"""Execute onnx2snn spiking artifacts: the artifact spec, the numpy reference runtime and backends.

    snn = runtimes.load("model.snn.onnx", backend="numpy")
    y = snn.run({"x": x})      # decoded outputs, dict by output name
"""

from .errors import ArtifactError, InputError, Onnx2SnnError
from .network import BACKENDS, SpikingNetwork, available_backends, load
from .numpy_ref import RunResult, SpikeCounts

__all__ = ["load", "SpikingNetwork", "BACKENDS", "available_backends", "RunResult", "SpikeCounts",
           "Onnx2SnnError", "ArtifactError", "InputError"]
