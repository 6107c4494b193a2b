"""govctl: the operations control plane of a city government cloud."""

__version__ = "0.1.0"
