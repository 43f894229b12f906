"""Experiment drivers that chain several commands into one paper table."""
