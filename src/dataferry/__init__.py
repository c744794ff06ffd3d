"""dataferry: keep non-production environments supplied with fresh, sanitised copies of production data."""

__version__ = "0.1.0"

__all__ = ["__version__"]
