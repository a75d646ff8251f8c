"""Finders: each turns probed `Outputs` into a list of `FailureMode`s."""

from faultlines.find.density import FeatureDensity
from faultlines.find.error_mixture import ErrorMixture
from faultlines.find.perturb import PerturbationProbe
from faultlines.find.spotlight import Spotlight

__all__ = ["ErrorMixture", "FeatureDensity", "PerturbationProbe", "Spotlight"]
