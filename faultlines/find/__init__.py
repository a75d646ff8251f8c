"""Finders: each turns probed `Outputs` into a list of `FailureMode`s."""

from faultlines.find.spotlight import Spotlight

__all__ = ["Spotlight"]
