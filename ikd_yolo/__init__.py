"""ikd_yolo: Inconsistent Knowledge Distillation for Ultralytics YOLO detectors."""

__version__ = "0.1.0"
