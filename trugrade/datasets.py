"""Former home of scan / load_manifest / sampler_indices: they live in trugrade.data now.

Kept so that `trugrade.datasets.scan(...)` still works; it is the same function object.
"""
from .data import SAMPLER_KINDS, SPLITS, Dataset, load_manifest, sampler_indices, scan

__all__ = ["Dataset", "SAMPLER_KINDS", "SPLITS", "load_manifest", "sampler_indices", "scan"]
