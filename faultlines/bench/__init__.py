"""Planted-failure problems with known ground truth, to measure what the finders find."""
