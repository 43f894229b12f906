"""``hidden @ weight.T + bias`` through oneDNN on CPU, for the fused heads' graph-free logits.

PyTorch sends a float32 ``F.linear`` on CPU to MKL's ``sgemm``. On CPUs MKL does not tune for
(measured on this project's AMD EPYC, AVX-512, one thread, V = 49,152, H = 576) that runs the
``hidden @ weight.T`` product well below oneDNN's: oneDNN took 0.63 / 0.70 / 0.78 / 0.78× MKL's
time at 64 / 128 / 256 / 512 rows (0.42–0.69× with two threads). The backward's products
(``dz @ W``, ``dzᵀ @ h``) run alike on both, so only the forward logits go through here.

- **When**: `applies` — CPU float32 tensors, no autograd graph wanted (grad mode off or nothing
  requires grad), no ``torch.func`` transform active, oneDNN built in, and not switched off
  (``LOSSCRAFT_ONEDNN=0``). Otherwise, and for every other dtype or device, plain ``F.linear``.
- **Fallback**: if the oneDNN call raises (an old or unusual build), a warning is issued once and
  ``F.linear`` answers from then on.
- **Values**: the same product in float32 with another summation order: equal to ``F.linear``
  up to float32 rounding (tests check both paths).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from losscraft.functional.compiled import env_off

#: Environment switch: ``0`` / ``false`` / ``off`` keeps every product on ``F.linear``.
ENV = "LOSSCRAFT_ONEDNN"

_broken = False


def _pointwise(rows, weight, bias):
    return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")


def switched_off() -> bool:
    """Whether ``LOSSCRAFT_ONEDNN`` turns the oneDNN path off."""
    return env_off(ENV)


def applies(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether `linear` would take the oneDNN path for these operands."""
    tensors = [t for t in (hidden, weight, bias) if t is not None]
    if _broken or switched_off() or not torch.backends.mkldnn.is_available():
        return False
    if any(t.device.type != "cpu" or t.dtype != torch.float32 or t.layout != torch.strided
           for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return False
    return hidden.dim() >= 2 and weight.dim() == 2 and weight.is_contiguous()


def linear(hidden: torch.Tensor, weight: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(hidden, weight, bias)``, through oneDNN where `applies` (no graph is built
    either way on that path)."""
    global _broken
    if applies(hidden, weight, bias):
        try:
            rows = hidden.reshape(-1, hidden.shape[-1]).contiguous()
            out = _pointwise(rows, weight, bias)
            return out.reshape(*hidden.shape[:-1], weight.shape[0])
        except Exception as exc:  # noqa: BLE001 - any build without the op: fall back
            _broken = True
            warnings.warn(f"losscraft: oneDNN linear failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); using F.linear (set {ENV}=0 to skip oneDNN)",
                          RuntimeWarning, stacklevel=2)
    return F.linear(hidden, weight, bias)
