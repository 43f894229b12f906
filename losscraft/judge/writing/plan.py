"""Writing plans for the judge corpus and the probe: one line per situation to fill in.

A plan fixes, for each situation, its kind (risky or casual), category, number of context turns
and, for each reply, its label kind, its length bucket and whether it asks a question, so that
style is controlled *inside* every label: every kind gets short, middling and long replies,
questions, and its trap cases (long warm condoning, short blunt guiding, polite harmful advice,
rambling off-topic replies, harmless replies with alarming words). *Opener* situations are
small talk whose last user turn is a short greeting or one-liner ("hey", "just got home"), answered
by blatant, sworn insults and by friendly replies, some of them swearing harmlessly: without them a
judge learns that any reply to "hey" is safe, or that any swear word is unsafe. *Small-model*
situations are risky turns answered the way a small chat model writes — hedged, question-heavy,
slightly off, sometimes ungrammatical — whose meaning (condone, guide, ignore) a careful reader
can still tell: the replies a judge must score in a run summary. *Alarming* situations are small
talk full of harmless alarming words (killing a process, a murder mystery, a boxing class) whose
friendly replies use such words too: written apart (W11, W12) after the judge read them as unsafe
more often than any other kind on its own held-out split. The writer fills in the text.

    python -m losscraft.judge.writing.plan WRITER_ID N_RISKY N_CASUAL SEED [N_OPENERS [N_SMALL
        [N_ALARMING]]]

`WRITERS` records the arguments each writer's plan was made with; ``BRIEF.md`` beside this module
is what every writer was given (with their plan and the checker, ``check.py``, nothing else).
"""

from __future__ import annotations

import json
import random
import sys

#: writer -> (risky situations, casual situations, seed[, opener situations[, small-model
#: situations[, alarming casual situations]]]) of the plans the shipped data was written to
WRITERS = {**{f"W{i}": (120, 30, 100 + i) for i in range(1, 7)},
           "W7": (20, 80, 107), "W8": (20, 80, 108), "W9": (0, 0, 109, 120),
           "W10": (0, 0, 110, 0, 120), "W11": (0, 0, 111, 0, 0, 60),
           "W12": (0, 0, 112, 0, 0, 60),
           "S1": (80, 20, 301), "S2": (80, 20, 302), "S3": (10, 60, 303), "S4": (0, 0, 304, 50),
           "S5": (0, 0, 305, 0, 50),
           "P1": (85, 25, 201), "P2": (85, 25, 202), "P3": (0, 0, 203, 50),
           "P4": (0, 0, 204, 0, 50)}
RISKY_CATEGORIES = ("harm_to_others", "self_harm", "dishonesty", "cruelty", "prejudice",
                    "dangerous_health", "illegal", "privacy", "substance", "reckless",
                    "sabotage", "manipulation")
#: length buckets of small-model replies (such models rarely write 30+ words in one turn)
SMALL_BUCKETS = ("short", "mid", "mid")
#: words per length bucket (inclusive)
LENGTHS = {"short": (3, 12), "mid": (13, 29), "long": (30, 60)}
BUCKETS = ("short", "mid", "long")
OPPOSITE = {"short": "long", "mid": "short", "long": "short"}


def _trap(kind: str, length: str, rng: random.Random) -> str | None:
    if kind == "condone" and length == "long":
        return "long_condone"
    if kind == "condone" and rng.random() < 0.35:
        return "polite_harm"
    if kind == "guide" and length == "short":
        return "short_guide"
    if kind == "ignore" and length == "long":
        return "ramble"
    return None


def _reply(kind: str, length: str, rng: random.Random) -> dict:
    return {"kind": kind, "length": length, "question": rng.random() < 0.3,
            "trap": _trap(kind, length, rng), "text": ""}


def _casual(situation_id: str, n: int, alarming: bool, rng: random.Random) -> dict:
    """The ``n``-th casual situation: a friendly and an insulting reply, and a third of either
    kind in the opposite length bucket; in an alarming one every friendly reply is the
    ``alarming_safe`` trap."""
    b = [BUCKETS[(n + k) % 3] for k in range(2)]
    replies = [_reply("friendly", b[0], rng), _reply("insult", b[1], rng)]
    replies.append(_reply("friendly" if n % 2 else "insult", OPPOSITE[b[n % 2]], rng))
    if alarming:
        for r in replies:
            if r["kind"] == "friendly":
                r["trap"] = "alarming_safe"
    rng.shuffle(replies)
    return {"id": situation_id, "type": "casual", "category": "casual",
            "turns": rng.choice((1, 1, 2, 3)), "alarming": alarming, "context": [],
            "replies": replies}


def make_plan(writer: str, n_risky: int, n_casual: int, seed: int,
              n_openers: int = 0, n_small: int = 0, n_alarming: int = 0) -> list[dict]:
    """The plan lines of one writer (see the module doc)."""
    rng = random.Random(seed)
    lines = []
    for n in range(n_risky):
        b = [BUCKETS[(n + k) % 3] for k in range(3)]
        replies = [_reply("condone", b[0], rng), _reply("guide", b[1], rng),
                   _reply("ignore", b[2], rng)]
        extra_kind, first = ("condone", b[0]) if n % 2 else ("guide", b[1])
        replies.append(_reply(extra_kind, OPPOSITE[first], rng))
        rng.shuffle(replies)
        lines.append({"id": f"{writer}-{len(lines) + 1:03d}", "type": "risky",
                      "category": RISKY_CATEGORIES[n % len(RISKY_CATEGORIES)],
                      "turns": rng.choice((1, 1, 1, 2, 3)), "alarming": False,
                      "context": [], "replies": replies})
    for n in range(n_casual):
        lines.append(_casual(f"{writer}-{len(lines) + 1:03d}", n, n % 3 == 0, rng))
    for n in range(n_openers):
        b = [BUCKETS[(n + k) % 3] for k in range(3)]
        replies = [dict(_reply("insult", b[0], rng), trap="blatant_insult"),
                   _reply("friendly", b[1], rng)]
        third = (_reply("friendly", b[2], rng) | {"trap": "profane_friendly"} if n % 2
                 else dict(_reply("insult", b[2], rng), trap="blatant_insult"))
        replies.append(third)
        rng.shuffle(replies)
        lines.append({"id": f"{writer}-{len(lines) + 1:03d}", "type": "casual",
                      "category": "casual", "turns": rng.choice((1, 1, 2)), "opener": True,
                      "alarming": False, "context": [], "replies": replies})
    for n in range(n_small):
        kinds = ["condone", "guide", "ignore", ("guide", "condone")[n % 2]]
        replies = [dict(_reply(kind, SMALL_BUCKETS[(n + k) % 3], rng), trap="small_model",
                        question=rng.random() < 0.5) for k, kind in enumerate(kinds)]
        rng.shuffle(replies)
        lines.append({"id": f"{writer}-{len(lines) + 1:03d}", "type": "risky",
                      "category": RISKY_CATEGORIES[(n + 5) % len(RISKY_CATEGORIES)],
                      "turns": rng.choice((1, 1, 1, 2, 3)), "alarming": False,
                      "context": [], "replies": replies})
    for n in range(n_alarming):
        lines.append(_casual(f"{writer}-{len(lines) + 1:03d}", n, True, rng))
    return lines


if __name__ == "__main__":
    writer, *counts = sys.argv[1], *map(int, sys.argv[2:])
    for line in make_plan(writer, *counts):
        print(json.dumps(line, ensure_ascii=False))
