"""adaxbench: which adaptive optimizer trains better, settled by experiment."""

__version__ = "0.1.0"
