"""PermaCloud: permanent, self-hosted cloud storage for the desktop."""

__version__ = "0.1.0"
