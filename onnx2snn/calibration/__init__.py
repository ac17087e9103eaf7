"""Calibration: thresholds, neurons per unit, bias/potential correction and closed-form refit."""

from .options import METHODS, ConversionOptions
from .pipeline import Calibration, calibrate

__all__ = ["ConversionOptions", "METHODS", "Calibration", "calibrate"]
