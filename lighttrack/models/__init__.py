"""LightTrack models: blocks, supernets, static subnets, complexity and BN recalibration."""
from lighttrack.models.bn import recalibrate_bn
from lighttrack.models.complexity import Complexity, ComplexityTable, count, parse_quantity
from lighttrack.models.static import StaticClassifier, StaticTracker, fold_bn
from lighttrack.models.supernet import ClassSupernet, SupernetPath, TrackSupernet, extract

__all__ = [
    "TrackSupernet", "SupernetPath", "ClassSupernet", "StaticTracker", "StaticClassifier",
    "extract", "fold_bn", "count", "Complexity", "ComplexityTable", "parse_quantity", "recalibrate_bn",
]
