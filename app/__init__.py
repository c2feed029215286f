"""PloyD: CI for ML teams."""

__version__ = "0.1.0"
