"""dqad: the shared library of the data-quality anomaly detection pipeline."""

__version__ = "0.1.0"
