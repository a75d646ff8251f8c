"""Finders: each turns probed `Outputs` into a list of `FailureMode`s, through one contract
(`faultlines.find.base.Finder`). `faultlines.registry` maps every finder's name to its class;
FeatureDensity, a finder and a detector, lives in `faultlines.detect`."""

from faultlines.find.base import Finder
from faultlines.find.defuse import Defuse
from faultlines.find.error_mixture import ErrorMixture
from faultlines.find.perturb import PerturbationProbe
from faultlines.find.spotlight import Spotlight

__all__ = ["Defuse", "ErrorMixture", "Finder", "PerturbationProbe", "Spotlight"]
