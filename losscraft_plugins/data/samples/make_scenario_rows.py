"""Rows in the real schemas from the project's hand-written scenario bank (``scenarios/*.jsonl``).

The bank holds risky user turns (harm to others, self-harm, dishonesty, cruelty, prejudice,
dangerous health choices, illegal acts, privacy, everyday ethics), each with replies that *guide*
(notice the problem and gently steer), *condone* (endorse, encourage, minimise) and *ignore* (change
the subject, no endorsement, no concern), and casual turns with *friendly* and *insulting* replies.
Four writers wrote it independently, in varied voices and without shared sentence frames, so that a
judge trained on it has to learn meaning rather than templates. Schema of a bank line::

    {"id", "category", "history": [turns, oldest first; the user's turn last], "safety_label",
     "rots": [...], "guide": [...], "condone": [...], "ignore": [...]}        # risky
    {"id", "category": "casual", "history", "safety_label": "__casual__", "rots": [],
     "friendly": [...], "insult": [...]}                                       # casual

The sample generators (``make_prosocial_sample.py``, ``make_mic_sample.py``,
``make_bot_adversarial_dialogue.py``) append what this module derives:

- ProsocialDialog: one dialogue per scenario — earlier turn pairs as ``__casual__`` rows, then the
  user's turn with the first guiding reply (risky) or the first friendly reply (casual);
- MIC (single-turn risky scenarios): every reply to the user's turn, ``A_agrees`` 2 guide /
  1 ignore / 0 condone, judged against the scenario's first RoT;
- BAD: every reply with the full history, ``__ok__`` guide / ignore / friendly, ``__notok__``
  condone / insult, ``speaker_to_eval:bot``.

A scenario goes to one split in every schema (by a hash of its id: 20% test, 10% validation), so
no held-back context is trained on anywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

BANK = Path(__file__).parent / "scenarios"
LABEL_WORDS = {"__casual__": "casual", "__possibly_needs_caution__": "possibly needs caution",
               "__probably_needs_caution__": "probably needs caution",
               "__needs_caution__": "needs caution",
               "__needs_intervention__": "needs intervention"}
#: ProsocialDialog's ``source`` column by category (the real data's sources)
SOURCES = {"prejudice": "sbic", "dishonesty": "ethics_amt", "illegal": "ethics_amt",
           "everyday_ethics": "ethics_reddit"}
#: MIC moral foundations by category
MORALS = {"harm_to_others": "care", "self_harm": "care", "cruelty": "care",
          "dishonesty": "fairness", "illegal": "fairness|authority", "prejudice": "fairness",
          "privacy": "liberty|loyalty", "dangerous_health": "care", "everyday_ethics": "loyalty"}
SEVERITY = {"__possibly_needs_caution__": 2, "__probably_needs_caution__": 3,
            "__needs_caution__": 4, "__needs_intervention__": 5}
CHATBOTS = ["blenderbot", "dialoGPT", "gpt-neo"]


def load_scenarios() -> list[dict]:
    """Every bank line, files in name order."""
    rows = []
    for path in sorted(BANK.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def split_of(scenario: dict) -> str:
    """``train`` / ``validation`` / ``test`` from a hash of the scenario id (stable, 70/10/20)."""
    bucket = int(hashlib.sha256(scenario["id"].encode()).hexdigest(), 16) % 10
    return "test" if bucket < 2 else "validation" if bucket == 2 else "train"


def _user_turns_first(history: list[str]) -> list[str]:
    """The history starting at a user turn (user turns are the last and every other one)."""
    return history[len(history) % 2 - 1:] if len(history) % 2 == 0 else history


def prosocial_rows(first_dialogue_id: int) -> list[dict]:
    """ProsocialDialog rows, one dialogue per scenario, dialogue ids from ``first_dialogue_id``."""
    rows = []
    for n, sc in enumerate(load_scenarios()):
        turns = _user_turns_first(sc["history"])
        label = sc["safety_label"]
        reply = (sc.get("guide") or sc.get("friendly"))[0]
        pairs = [(turns[i], turns[i + 1], "__casual__", []) for i in range(0, len(turns) - 1, 2)]
        pairs.append((turns[-1], reply, label, list(sc.get("rots", []))))
        for response_id, (context, response, row_label, rots) in enumerate(pairs):
            reason = rots[0] if rots else "The speaker is just chatting."
            rows.append({"context": context, "response": response, "rots": rots,
                         "safety_label": row_label,
                         "safety_annotations": [LABEL_WORDS[row_label]] * 3,
                         "safety_annotation_reasons": [reason] * 3,
                         "source": SOURCES.get(sc["category"], "socialchemistry"),
                         "etc": f"losscraft-scenario/{sc['id']}",
                         "dialogue_id": first_dialogue_id + n, "response_id": response_id,
                         "episode_done": response_id == len(pairs) - 1, "split": split_of(sc)})
    return rows


def mic_rows() -> list[dict]:
    """MIC rows for the single-turn risky scenarios (see the module doc)."""
    rows = []
    for n, sc in enumerate(load_scenarios()):
        if sc["category"] == "casual" or len(sc["history"]) != 1:
            continue
        split = {"validation": "dev"}.get(split_of(sc), split_of(sc))
        answers = ([(a, 2) for a in sc["guide"]] + [(a, 1) for a in sc["ignore"]]
                   + [(a, 0) for a in sc["condone"]])
        for i, (answer, agrees) in enumerate(answers):
            rows.append({"Q": sc["history"][-1], "A": answer, "rot": sc["rots"][0],
                         "moral": MORALS.get(sc["category"], "care"), "A_agrees": agrees,
                         "rot-agree": 4 + (n + i) % 2,
                         "violation-severity": SEVERITY.get(sc["safety_label"], 3),
                         "chatbot": CHATBOTS[(n + i) % 3], "split": split})
    return rows


def bad_lines(split: str) -> list[str]:
    """BAD lines (ParlAI text format) of ``split`` (``train`` / ``valid`` / ``test``)."""
    wanted = {"valid": "validation"}.get(split, split)
    lines = []
    for sc in load_scenarios():
        if split_of(sc) != wanted:
            continue
        replies = [(r, "__ok__") for key in ("guide", "ignore", "friendly") for r in sc.get(key, [])]
        replies += [(r, "__notok__") for key in ("condone", "insult") for r in sc.get(key, [])]
        for i, (reply, label) in enumerate(replies):
            text = "\\n".join(t.replace("\t", " ").replace("\n", " ")
                              for t in sc["history"] + [reply])
            lines.append("\t".join([f"text:{text}", f"labels:{label}",
                                    f"episode_done:{i == len(replies) - 1}",
                                    "speaker_to_eval:bot", "bot_persona:"]))
    return lines
