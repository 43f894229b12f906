"""Rendering results for people: evaluation reports, comparison tables and plots, pooled seeds,
benchmark reports, the plugin listing."""
