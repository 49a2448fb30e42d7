"""Reproducibility study of Gradient Origin Networks (GON) and Gradient Flow Encoding (GFE).

The library is organised one concern per module (see README "Layout"); pipeline stages in
``pipelines/`` are thin scripts over it. Only :mod:`repro.tracking` imports mlflow.
"""

__version__ = "0.1.0"
