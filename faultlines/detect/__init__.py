"""Detectors of inputs a classifier is likely to get wrong, on one `Detector` shape (fit,
score, conformal p-values): FeatureDensity and the usual baselines; the attacks and OOD images
they are judged on, the metrics, and the analysis that puts them side by side."""

from faultlines.detect.base import Detector
from faultlines.detect.baselines import BASELINES, KNN, MSP, Energy, Mahalanobis, TrustScore
from faultlines.detect.density import FeatureDensity
from faultlines.detect.metrics import detection_metrics

__all__ = ["BASELINES", "KNN", "MSP", "Detector", "Energy", "FeatureDensity", "Mahalanobis", "TrustScore", "detection_metrics"]
