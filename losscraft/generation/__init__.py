"""Sampling replies from a causal LM, scoring replies under it, and reranking candidates."""

from losscraft.generation.decode import generate_responses, response_nll, sample_and_rerank
from losscraft.generation.nucleus import NucleusFilter

__all__ = ["NucleusFilter", "generate_responses", "response_nll", "sample_and_rerank"]
