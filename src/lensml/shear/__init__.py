"""Shear-measurement calibration tools (metacalibration)."""
