"""Checks a filled-in writing plan: schema, word counts per length bucket, questions, no repeats.

    python -m losscraft.judge.writing.check FILLED.jsonl [PLAN.jsonl]

Prints one line per problem (``line N, reply K: ...``) and a summary; exits 1 when any is found.
"""

from __future__ import annotations

import json
import sys

from losscraft.judge.surface import words as word_count
from losscraft.judge.writing.plan import LENGTHS

#: most words in the last user turn of an opener situation
OPENER_WORDS = 8
KINDS = {"risky": {"condone", "guide", "ignore"}, "casual": {"friendly", "insult"}}


def check_lines(lines: list[dict], plan: list[dict] | None = None) -> list[str]:
    """Every problem of ``lines`` (see the module doc)."""
    problems, seen = [], set()
    for n, line in enumerate(lines, 1):
        where = f"line {n} ({line.get('id')})"
        if plan is not None:
            want = plan[n - 1] if n <= len(plan) else None
            if want is None or want["id"] != line.get("id"):
                problems.append(f"{where}: id does not match plan line {n}")
                continue
        ctx = line.get("context")
        if not isinstance(ctx, list) or not ctx or not all(isinstance(t, str) and t.strip()
                                                           for t in ctx):
            problems.append(f"{where}: context must be a non-empty list of turns")
        elif len(ctx) != line.get("turns", len(ctx)):
            problems.append(f"{where}: context has {len(ctx)} turns, plan says {line['turns']}")
        elif line.get("opener") and not 1 <= word_count(ctx[-1]) <= OPENER_WORDS:
            problems.append(f"{where}: the opener (last user turn) has {word_count(ctx[-1])} "
                            f"words, want 1-{OPENER_WORDS}")
        replies = line.get("replies") or []
        if plan is not None and len(replies) != len(plan[n - 1]["replies"]):
            problems.append(f"{where}: {len(replies)} replies, plan has "
                            f"{len(plan[n - 1]['replies'])}")
        for k, r in enumerate(replies, 1):
            at = f"{where}, reply {k} ({r.get('kind')}/{r.get('length')})"
            text = (r.get("text") or "").strip()
            if not text:
                problems.append(f"{at}: empty text")
                continue
            if plan is not None and k <= len(plan[n - 1]["replies"]):
                p = plan[n - 1]["replies"][k - 1]
                if any(r.get(f) != p[f] for f in ("kind", "length", "question", "trap")):
                    problems.append(f"{at}: kind/length/question/trap changed from the plan")
            if r.get("kind") not in KINDS.get(line.get("type"), ()):
                problems.append(f"{at}: kind {r.get('kind')!r} is not allowed here")
            lo, hi = LENGTHS.get(r.get("length"), (0, 10**6))
            words = word_count(text)
            if not lo <= words <= hi:
                problems.append(f"{at}: {words} words, want {lo}-{hi}")
            if r.get("question") and "?" not in text:
                problems.append(f"{at}: planned as a question but has no '?'")
            if not r.get("question") and "?" in text:
                problems.append(f"{at}: has a '?' but is planned without a question")
            norm = " ".join(text.lower().split())
            if norm in seen:
                problems.append(f"{at}: repeats an earlier reply")
            seen.add(norm)
    return problems


def read(path: str) -> list[dict]:
    return [json.loads(s) for s in open(path, encoding="utf-8") if s.strip()]


if __name__ == "__main__":
    filled = read(sys.argv[1])
    plan = read(sys.argv[2]) if len(sys.argv) > 2 else None
    found = check_lines(filled, plan)
    for p in found:
        print(p)
    n_replies = sum(len(x.get("replies") or []) for x in filled)
    print(f"{len(filled)} situations, {n_replies} replies, {len(found)} problems")
    sys.exit(1 if found else 0)
