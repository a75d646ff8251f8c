"""Repairs: labelling Defuse's regions and fine-tuning the model to correct them."""
