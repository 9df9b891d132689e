"""The package's version (a leaf module: any layer may read it without importing the package root)."""

__version__ = "0.1.0"  # as pyproject.toml's [project] version
