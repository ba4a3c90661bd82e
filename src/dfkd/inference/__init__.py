"""Inference: the Detector API, face detection and cropping, videos, live sources and Grad-CAM explanations."""

from dfkd.inference.detector import Detector

__all__ = ["Detector"]
