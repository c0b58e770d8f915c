"""Synthetic fingerprints, SFinGe-style: master prints, their impressions, whole datasets.

A master print is one finger's complete ridge pattern (class, singular points, orientation and
ridge-period fields, ridges grown by iterated Gabor filtering, so minutiae arise on their own,
and permanent creases or scars);
an impression is one touch of that finger on a sensor (pose, skin distortion, contact area,
dry or wet skin, the touch's quality, dirt, noise, the sensor's gray levels). ``generate_dataset`` writes the standard
layout ``<subject>/<hand>/<finger>/<take>.png`` reproducibly from a seed.

Reference: R. Cappelli, D. Maio, D. Maltoni, "Synthetic fingerprint-database generation",
ICPR 2002 (SFinGe).
"""

from __future__ import annotations

from .impressions import SENSORS, SensorSpec, render_impression, sensor_spec
from .masters import MasterPrint, make_master
from .orientation import CLASS_FREQUENCIES, FINGERPRINT_CLASSES, sample_class
from .writer import GENERATOR_VERSION, finger_folder, generate_dataset, generate_finger

__all__ = [
    "CLASS_FREQUENCIES",
    "FINGERPRINT_CLASSES",
    "GENERATOR_VERSION",
    "SENSORS",
    "MasterPrint",
    "SensorSpec",
    "finger_folder",
    "generate_dataset",
    "generate_finger",
    "make_master",
    "render_impression",
    "sample_class",
    "sensor_spec",
]
