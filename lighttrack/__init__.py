"""LightTrack: lightweight trackers found by one-shot architecture search."""
__version__ = "0.1.0"
