"""Datasets: readers for real layouts, pair sampling and processing, the embedded synthetic set.

Submodules are imported on use (``from lighttrack.data.readers import Got10k``) so that the
tracker can read sequences without importing torch-side sampling code.
"""
__all__ = ["fs", "readers", "classification", "sampling", "processing", "labels", "synth", "check", "shapes"]
