"""onnx2snn: convert physics-informed neural networks (ONNX) into spiking neural networks.

    import onnx2snn, runtimes
    result = onnx2snn.convert("model.onnx", domain={"x": [(-1, 1)]}, timesteps=32)
    result.save("model.snn.onnx"); print(result.report)
    snn = runtimes.load("model.snn.onnx", backend="numpy")
    y = snn.run({"x": x})
    cheapest = onnx2snn.cheapest_conversion("model.onnx", 1e-2)   # least energy within 1e-2
"""

from .convert import ConversionResult, convert
from .search import cheapest_conversion
from .errors import CalibrationError, DomainError, ModelError, Onnx2SnnError, OutputPathError

__version__ = "0.1.0"
__all__ = ["convert", "cheapest_conversion", "ConversionResult", "Onnx2SnnError", "ModelError", "DomainError", "CalibrationError",
           "OutputPathError", "__version__"]
