"""hookline: a self-hostable webhook sender."""

__version__ = "0.1.0"
