"""tastegraph: a self-hostable AI visual discovery engine."""

__version__ = "0.1.0"
__all__ = ["__version__"]
