"""salnas: evolutionary multi-objective NAS for visual saliency prediction."""

__version__ = "0.1.0"
