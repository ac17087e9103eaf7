"""onnx2snn: convert physics-informed neural networks (ONNX) into spiking neural networks.

    import onnx2snn, runtimes
    result = onnx2snn.convert("model.onnx", domain={"x": [(-1, 1)]}, timesteps=32)
    result.save("model.snn.onnx"); print(result.report)
    snn = runtimes.load("model.snn.onnx", backend="numpy")
    y = snn.run({"x": x})
    cheapest = onnx2snn.cheapest_conversion("model.onnx", 1e-2)   # least energy within 1e-2
    evaluation = onnx2snn.evaluate("model.snn.onnx", timesteps=[8, 32])   # an artifact against its ANN
    exported = onnx2snn.export_nir("model.snn.onnx"); onnx2snn.write_nir(exported, "model.nir")   # NIR hand-off

``convert``, ``ConversionResult``, ``cheapest_conversion``, ``evaluate`` and ``export_nir`` are imported on first use, so that importing
the package (and ``onnx2snn --help``) loads neither onnx, scipy nor numba.
"""

import importlib
import sys
import types

from .errors import CalibrationError, DomainError, ModelError, Onnx2SnnError, OutputPathError

__version__ = "0.1.0"
__all__ = ["convert", "cheapest_conversion", "ConversionResult", "evaluate", "Evaluation", "export_nir", "write_nir",
           "Onnx2SnnError", "ModelError", "DomainError",
           "CalibrationError", "OutputPathError", "__version__"]
_LAZY = {"convert": ".convert", "ConversionResult": ".convert", "cheapest_conversion": ".search",
         "evaluate": ".evaluate", "Evaluation": ".evaluate", "export_nir": ".nir_export", "write_nir": ".nir_export"}


class _Package(types.ModuleType):
    """The package, whose ``_LAZY`` names load their module on first access.  ``onnx2snn.convert`` stays
    the function: the import system's setting of the package attribute to the submodule of the same name is
    ignored (``sys.modules["onnx2snn.convert"]`` is the module)."""

    def __getattr__(self, name):
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        super().__setattr__(name, value)
        return value

    def __setattr__(self, name, value):
        if not (name in _LAZY and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_LAZY))


sys.modules[__name__].__class__ = _Package
