"""A plugin registered from a test module: a deterministic in-memory data source."""

from typing import Literal

from losscraft import Example, hookimpl

TURNS = ["hi, how are you?", "pretty good, and you?", "can you help me with my homework?",
         "i want to skip school tomorrow", "my friend lied to me", "what should i cook tonight?"]
REPLIES = ["I'm well, thanks for asking!", "Glad to hear it.", "Sure, what subject is it?",
           "School matters; maybe talk to someone about why.", "That hurts. Talk to them calmly.",
           "How about a simple pasta?"]


class ToyDialogs:
    """Deterministic short dialogs (for tests).

    Args:
        count: number of examples.
        with_negatives: attach one negative reply to each example.
    """

    def __init__(self, count: int = 8, with_negatives: bool = False):
        if count < 1:
            raise ValueError("count must be positive")
        self.count = count
        self.with_negatives = with_negatives

    def __iter__(self):
        for i in range(self.count):
            j = i % len(TURNS)
            yield Example(history=[TURNS[(j + 1) % len(TURNS)], TURNS[j]], response=REPLIES[j],
                          is_safe=i % 3 != 0, negatives=["whatever."] if self.with_negatives else [],
                          id=f"toy-{i}")


@hookimpl
def register_data_sources(register):
    register("toy_dialogs", ToyDialogs)


class NanAtStep:
    """A test objective: the NLL of the positive response, but NaN from optimizer step ``step``
    (0-based; the trainer's ``ctx.step``) on — to exercise the non-finite guard.

    Args:
        step: the first step whose loss is NaN.
    """

    def __init__(self, step: int = 2):
        self.step = step

    def __call__(self, ctx):
        import torch

        from losscraft import LossOutput
        from losscraft.functional import token_nll

        mask = ctx.batch.response_mask
        value = token_nll(ctx.logits, ctx.batch.targets, mask,
                          normalizer=ctx.step_sum("nan_tokens", lambda b: b.response_mask.sum()))
        if ctx.step >= self.step:
            value = value * torch.tensor(float("nan"))
        return LossOutput(value, {})


@hookimpl
def register_objectives(register):
    register("nan_at_step", NanAtStep)


class TypedToy:
    """A test data source whose parameters are checked from their annotations alone.

    Args:
        only_safe: keep only safe examples.
        count: number of examples.
        scale: any number.
        mode: ``"a"`` or ``"b"``.
        tags: labels attached to each example's meta.
        cap: optional upper bound.
    """

    def __init__(self, only_safe: bool = False, count: int = 4, scale: float = 1.0,
                 mode: Literal["a", "b"] = "a", tags: list[str] | None = None,
                 cap: int | None = None):
        self.only_safe, self.count, self.scale, self.mode = only_safe, count, scale, mode
        self.tags, self.cap = tags or [], cap

    def __iter__(self):
        for example in ToyDialogs(self.count):
            if not self.only_safe or example.is_safe:
                yield example


@hookimpl(specname="register_data_sources")
def register_typed_source(register):
    register("toy_typed", TypedToy)


class BadReturn:
    """A test objective that returns something the trainer cannot backpropagate.

    Args:
        mode: ``"vector"`` (per-row losses, not reduced), ``"detached"`` (computed from detached
            logits), ``"number"`` (a Python float) or ``"tensor"`` (a bare tensor, no
            `LossOutput`).
    """

    def __init__(self, mode: Literal["vector", "detached", "number", "tensor"] = "vector"):
        self.mode = mode

    def __call__(self, ctx):
        from losscraft import LossOutput

        per_row = -ctx.logits.log_softmax(-1).mean(dim=(1, 2))
        if self.mode == "vector":
            return LossOutput(per_row, {})
        if self.mode == "detached":
            return LossOutput(per_row.detach().sum(), {})
        if self.mode == "number":
            return LossOutput(float(per_row.detach().sum()), {})
        return per_row.sum()


@hookimpl(specname="register_objectives")
def register_bad_return(register):
    register("bad_return", BadReturn)
