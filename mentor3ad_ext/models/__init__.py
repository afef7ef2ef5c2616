"""Feature extractors and (later) the Mentor3AD model. See `extractor.FeatureExtractor`."""
from .extractor import FeatureExtractor, masked_patch_mean, patch_coverage  # noqa: F401
from .handcrafted import FPFHExtractor, HandcraftedRGBExtractor, srgb_to_lab  # noqa: F401

__all__ = ["FeatureExtractor", "FPFHExtractor", "HandcraftedRGBExtractor", "masked_patch_mean",
           "patch_coverage", "srgb_to_lab"]
