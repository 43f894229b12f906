"""The safety loss of Khalatbari et al. (2023): pull the policy towards a clean expert and push
it away from a toxic one, per response token, with Jensen–Shannon divergences."""

from __future__ import annotations

import math

import torch

from losscraft.functional.js import js_divergence_rows, masked_mean, select_positions


def safety_weights(beta: float, gamma: float) -> tuple[float, float]:
    """The weights of ``(JS(p_θ, p_clean), JS(p_θ, p_toxic))`` in ``L_S``: ``(γ, −β)``, so the
    clean divergence is minimised and the toxic one maximised."""
    return gamma, -beta


def combine_safety(js_clean: torch.Tensor, js_toxic: torch.Tensor, *, beta: float,
                   gamma: float) -> torch.Tensor:
    """``L_S = γ·JS(p_θ, p_clean) − β·JS(p_θ, p_toxic)`` from the two divergences."""
    w_clean, w_toxic = safety_weights(beta, gamma)
    return w_clean * js_clean + w_toxic * js_toxic


def safety_divergences(
    logits: torch.Tensor,
    clean_logits: torch.Tensor,
    toxic_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    chunk_size: int | None = None,
    log_base: float = math.e,
    normalizer: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(JS(policy, clean), JS(policy, toxic))``, each a masked mean over positions.

    Both come from one chunked pass over the policy logits (its log-softmax is computed once
    per chunk). Arguments as in `safety_loss`.
    """
    if log_base <= 0 or log_base == 1:
        raise ValueError(f"log_base must be positive and ≠ 1, got {log_base}")
    weights, rows, clean, toxic = select_positions(mask, logits, clean_logits, toxic_logits)
    js = js_divergence_rows(rows, clean, toxic, chunk_size=chunk_size)
    scale = math.log(log_base)
    return (masked_mean(js[:, 0], weights, normalizer) / scale,
            masked_mean(js[:, 1], weights, normalizer) / scale)


def safety_loss(
    logits: torch.Tensor,
    clean_logits: torch.Tensor,
    toxic_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    beta: float = 2.0,
    gamma: float = 3.0,
    chunk_size: int | None = None,
    log_base: float = math.e,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """``L_S = −β·JS(p_θ, p_toxic) + γ·JS(p_θ, p_clean)``, averaged over masked positions.

    Args:
        logits: ``(..., V)`` policy logits.
        clean_logits: ``(..., V)`` logits of the clean expert (no gradient needed).
        toxic_logits: ``(..., V)`` logits of the toxic expert (no gradient needed).
        mask: ``logits.shape[:-1]`` weights (1 on response tokens).
        beta: weight of the toxic divergence (maximised). FlatGD Table 5: 2.
        gamma: weight of the clean divergence (minimised). FlatGD Table 5: 3.
        chunk_size: positions per chunk of the JS computation (see `js_divergence`).
        log_base: logarithm base of the divergences (``2`` normalises each JS to ``[0, 1]``).
        normalizer: divide by this instead of ``Σ mask`` (e.g. the step's token count).

    Returns:
        A scalar in ``[−β·ln 2, γ·ln 2]`` (natural logs).
    """
    js_clean, js_toxic = safety_divergences(
        logits, clean_logits, toxic_logits, mask, chunk_size=chunk_size, log_base=log_base,
        normalizer=normalizer)
    return combine_safety(js_clean, js_toxic, beta=beta, gamma=gamma)
