"""Benchmark points: the grid of tokens × vocabulary × dtype × device × experts × input kind."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch

from losscraft.errors import LosscraftError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
          "fp64": torch.float64}
INPUTS = ("logits", "hidden")

#: The CI-sized grid of ``--quick``.
QUICK = dict(tokens=(64,), vocab=(512,), dtypes=("fp32",), inputs=("logits", "hidden"),
             experts=(2,), hidden=64)


class BenchError(LosscraftError):
    """A benchmark was asked for something it cannot do (bad grid value, unknown implementation)."""


@dataclass(frozen=True)
class Point:
    """One benchmark shape.

    Attributes:
        tokens: positions scored (``B × T`` with ``B = 2`` rows when ``tokens`` is even).
        vocab: vocabulary size ``V``.
        hidden: hidden size ``H`` of the policy and the experts (``--input hidden``).
        dtype: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"fp64"`` (inputs' dtype).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        experts: how many experts a head compares with (the ``js`` head; objectives read the
            experts they declare).
        input: ``"logits"`` (the inputs are the logits) or ``"hidden"`` (hidden states + output
            weights; logits, where an implementation needs them, are formed inside the timing).
    """

    tokens: int
    vocab: int
    hidden: int = 576
    dtype: str = "fp32"
    device: str = "cpu"
    experts: int = 2
    input: str = "logits"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def rows(self) -> int:
        return 2 if self.tokens % 2 == 0 and self.tokens >= 2 else 1

    @property
    def length(self) -> int:
        return self.tokens // self.rows

    def asdict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return (f"{self.tokens}×{self.vocab} {self.dtype} {self.device} {self.input}"
                + (f" H={self.hidden}" if self.input == "hidden" else ""))


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """``"512,1024"`` → ``(512, 1024)``; accepts ``_`` separators and ``k`` suffixes (``8k``)."""
    out = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if not part:
            continue
        mult = 1024 if part.endswith("k") else 1
        try:
            value = int(part[:-1] if mult > 1 else part) * mult
        except ValueError:
            raise BenchError(f"--{what}: {part!r} is not an integer") from None
        if value < 1:
            raise BenchError(f"--{what}: values must be ≥ 1, got {value}")
        out.append(value)
    if not out:
        raise BenchError(f"--{what}: give at least one value")
    return tuple(out)


def parse_choices(text: str, what: str, allowed) -> tuple[str, ...]:
    """A comma-separated list, each value checked against ``allowed``."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    for v in values:
        if v not in allowed:
            raise BenchError(f"--{what}: unknown value {v!r} (choose from {', '.join(allowed)})")
    if not values:
        raise BenchError(f"--{what}: give at least one value")
    return values


def check_device(device: str) -> str:
    """The device name, checked to exist here (``cuda`` needs a visible GPU)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BenchError(f"--device: {device!r} is not a torch device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {device}: no CUDA device is visible on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise BenchError(f"--device {device}: only cpu and cuda are supported")
    return device


def make_grid(tokens, vocab, dtypes, devices, experts, inputs, hidden: int) -> list[Point]:
    """Every combination, in a stable order (device, input, dtype, vocab, experts, tokens)."""
    return [Point(tokens=t, vocab=v, hidden=hidden, dtype=d, device=dev, experts=k, input=i)
            for dev, i, d, v, k, t in itertools.product(devices, inputs, dtypes, vocab, experts,
                                                        tokens)]
