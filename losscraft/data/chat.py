"""Turning dialog turns into token ids through the tokenizer's chat template.

History turns are assigned roles from the end: the last turn is the ``user`` turn being answered,
the one before it ``assistant``, and so on. Context that does not fit is dropped from the left:
whole oldest turns first, then the oldest tokens.

Text from data never produces control tokens: a special-token string inside a turn, a reply or a
system prompt (``<|im_end|>``, ``<|im_start|>``, ``<|endoftext|>``, ...) is escaped by
`neutralise_special_tokens` — a zero-width space (U+200B) after its first character — so it is
tokenised as the plain characters it shows instead of ending the turn.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

from losscraft.errors import ModelError

#: Inserted after the first character of a special-token string found in text.
ESCAPE = "\u200b"
_SPECIALS: "weakref.WeakKeyDictionary[object, tuple[str, ...]]" = weakref.WeakKeyDictionary()

_FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def history_messages(history: Sequence[str], *, system: str | None = None) -> list[dict]:
    """Chat messages for ``history`` (oldest first), ending with the user turn to answer."""
    n = len(history)
    messages = [{"role": "system", "content": system}] if system else []
    for i, turn in enumerate(history):
        role = "user" if (n - 1 - i) % 2 == 0 else "assistant"
        messages.append({"role": role, "content": turn})
    return messages


def special_token_strings(tokenizer) -> tuple[str, ...]:
    """The tokenizer's special-token strings (longest first), cached per tokenizer."""
    try:
        return _SPECIALS[tokenizer]
    except (KeyError, TypeError):
        pass
    found = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            found.add(str(token.content))
    strings = tuple(sorted((t for t in found if isinstance(t, str) and len(t) > 1),
                           key=len, reverse=True))
    try:
        _SPECIALS[tokenizer] = strings
    except TypeError:
        pass
    return strings


def neutralise_special_tokens(text: str, tokenizer) -> str:
    """``text`` with every special-token string escaped (see the module docstring)."""
    for token in special_token_strings(tokenizer):
        if token in text:
            text = text.replace(token, token[0] + ESCAPE + token[1:])
    return text


def _template_ids(tokenizer, messages: list[dict], *, add_generation_prompt: bool) -> list[int]:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ModelError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; set "
            "tokenizer.chat_template (ChatML works for most causal LMs)")
    messages = [{**m, "content": neutralise_special_tokens(m["content"], tokenizer)}
                if isinstance(m.get("content"), str) else m for m in messages]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                        tokenize=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def context_ids(tokenizer, history: Sequence[str], *, system: str | None = None,
                max_tokens: int | None = None) -> list[int]:
    """Token ids of the prompt for ``history`` (with the assistant generation prompt), at most
    ``max_tokens`` long: oldest turns are dropped first, then the oldest tokens of the last turn
    (the system prompt, which may carry RoTs, is kept); only if the system prompt alone is too
    long are tokens cut from the left."""
    turns = list(history) or [""]

    def render(turns: list[str]) -> list[int]:
        return _template_ids(tokenizer, history_messages(turns, system=system),
                             add_generation_prompt=True)

    ids = render(turns)
    while max_tokens is not None and len(ids) > max_tokens and len(turns) > 1:
        turns = turns[1:]
        ids = render(turns)
    if max_tokens is not None and len(ids) > max_tokens:
        turn = tokenizer(turns[-1], add_special_tokens=False)["input_ids"]
        for _ in range(4):  # re-tokenising a cut text can shift by a token or two
            turn = turn[len(ids) - max_tokens:]
            ids = render(turns[:-1] + [tokenizer.decode(turn)])
            if len(ids) <= max_tokens or not turn:
                break
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[-max_tokens:]
    return ids


def response_ids(tokenizer, response: str, *, max_tokens: int | None = None) -> list[int]:
    """Token ids of an assistant reply including the template's end-of-turn marker, cut to
    ``max_tokens`` (the end marker is kept as the last token when cutting)."""
    probe = [{"role": "user", "content": "x"}]
    prefix = _template_ids(tokenizer, probe, add_generation_prompt=True)
    full = _template_ids(tokenizer, probe + [{"role": "assistant", "content": response}],
                         add_generation_prompt=False)
    if full[: len(prefix)] == prefix:
        ids = full[len(prefix):]
    else:  # templates that restructure earlier turns: tokenise the reply directly
        ids = tokenizer(neutralise_special_tokens(response, tokenizer),
                        add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
    # drop trailing whitespace-only tokens the template appends after the end-of-turn marker
    while len(ids) > 1 and tokenizer.decode(ids[-1:]).strip() == "":
        ids = ids[:-1]
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[: max_tokens - 1] + ids[-1:]
    return ids


def end_of_turn_id(tokenizer) -> int | None:
    """The token that ends an assistant turn (used as the stop token when generating)."""
    ids = response_ids(tokenizer, "")
    return ids[-1] if ids else tokenizer.eos_token_id


def context_turns(context: str | Sequence[str]) -> list[str]:
    """A context (a string or turns, oldest first) as a list of turns."""
    return [context] if isinstance(context, str) else [str(t) for t in context]


def context_text(context: str | Sequence[str], *, last: int | None = None,
                 separator: str = "\n") -> str:
    """The last ``last`` turns of ``context`` (all when ``None``) joined by ``separator``."""
    turns = context_turns(context)
    if last is not None:
        turns = turns[-last:] if last > 0 else []
    return separator.join(turns)
