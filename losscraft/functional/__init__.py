"""Pure tensor math for losscraft's objectives: no config, no I/O (like torch.nn.functional).

Conventions: logits are ``(..., V)``; masks are shaped like ``logits.shape[:-1]``; targets are
already aligned with the logits (``logits[..., t, :]`` predicts ``targets[..., t]``).
"""

from losscraft.functional.nll import token_nll

__all__ = ["token_nll"]
from losscraft.functional.js import js_divergence, js_divergence_rows  # noqa: E402
from losscraft.functional.safety import safety_divergences, safety_loss  # noqa: E402
from losscraft.functional.unlikelihood import unlikelihood_loss  # noqa: E402
from losscraft.functional.cringe import cringe_loss  # noqa: E402

__all__ += ["js_divergence", "js_divergence_rows", "safety_divergences", "safety_loss",
            "unlikelihood_loss", "cringe_loss"]
from losscraft.functional.sequence import (  # noqa: E402
    segment_logprobs, segment_mean, sequence_logprob, token_logprobs)
from losscraft.functional.npair import embedding_npair_loss, npair_loss  # noqa: E402

__all__ += ["segment_logprobs", "segment_mean", "sequence_logprob", "token_logprobs",
            "embedding_npair_loss", "npair_loss"]
from losscraft.functional.linear_head import LinearHead  # noqa: E402
from losscraft.functional.fused_js import fused_linear_js, fused_safety_loss  # noqa: E402
from losscraft.functional.fused_ce import fused_linear_logprobs, fused_linear_nll  # noqa: E402

__all__ += ["LinearHead", "fused_linear_js", "fused_safety_loss", "fused_linear_logprobs",
            "fused_linear_nll"]
from losscraft.functional.kl import kl_divergence  # noqa: E402

__all__ += ["kl_divergence"]
