"""Writes ``held_back/{risky,casual}.jsonl``: evaluation contexts that share nothing with training.

Every text a shipped recipe trains on (stage data, replay, the RoT bank; mining samples from stage
data) and every text of the judge corpus is forbidden; a candidate context is dropped when its
history equals a training history, when one of its turns equals a forbidden text after
normalisation, or when one comes near one (MiniLM cosine >= 0.8). The test
``tests/test_held_back.py`` checks the result the same way, against the data as it is then.

- risky: ProsocialDialog test-split contexts labelled ``__probably_needs_caution__`` or worse, in
  file order, at most ``N_RISKY``;
- casual: one three-turn window per chitchat-dataset test conversation (turns 3-5, so stock
  greetings stay out), then one context per conversation of the shipped casual samples' test
  split (daily_dialog, empathetic_dialogues: held-back templates), at most ``N_CASUAL`` in all;
- table1_bad / table1_prosocial: FlatGD Table 1's test contexts — BAD test contexts with an unsafe
  turn, cut to their last three turns (the templated openings are shared with training), and the
  ProsocialDialog contexts of the risky block's candidates;
- risky_dev / casual_dev: the same kinds of context from the validation splits (ProsocialDialog,
  chitchat-dataset), cleaned the same way, for choosing a recipe's settings without looking at the
  blocks that report its results.

Run from the repository root: ``python losscraft_plugins/data/samples/make_held_back.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
OUT = HERE / "held_back"
N_RISKY, N_CASUAL, N_SHIPPED_CASUAL = 80, 80, 16
COSINE = 0.8


def forbidden_texts():
    """``Texts`` of every shipped recipe's training data and of the judge corpus."""
    from losscraft.evaluation.training_rows import judge_corpus_texts, recipes_texts

    texts = recipes_texts(ROOT / "recipes")
    texts.update(judge_corpus_texts())
    return texts


def clean(candidates: list[tuple[str, str, list[str]]], texts, limit: int) -> list[dict]:
    """The first ``limit`` distinct candidates ``(id, source, history)`` that share nothing with
    ``texts`` (`context_overlaps`)."""
    from losscraft.evaluation.overlap import context_overlaps

    overlapping = context_overlaps([h for _, _, h in candidates], texts, COSINE)
    kept, seen = [], set()
    for i, (cid, source, history) in enumerate(candidates):
        if i in overlapping or tuple(history) in seen:
            continue
        seen.add(tuple(history))
        kept.append({"id": cid, "source": source, "context": history})
        if len(kept) >= limit:
            break
    return kept


def risky_candidates(split: str = "test") -> list[tuple[str, str, list[str]]]:
    from losscraft.app.experiments.flatgd_table1 import prosocial_risky_contexts

    return [(f"prosocial_dialog-{split}-{i}", "prosocial_dialog", c)
            for i, c in enumerate(prosocial_risky_contexts({"split": split}))]


def table1_candidates() -> dict[str, list[tuple[str, str, list[str]]]]:
    from losscraft.app.experiments.flatgd_table1 import bad_risky_contexts

    return {"table1_bad": [(f"bad-test-{i}", "bot_adversarial_dialogue", c[-3:])
                           for i, c in enumerate(bad_risky_contexts())],
            "table1_prosocial": risky_candidates()}


def casual_candidates(split: str = "test") -> tuple[list, list]:
    """``(chitchat windows, shipped-sample contexts)`` of ``split``."""
    from losscraft.plugins.registry import get_registry

    registry = get_registry()
    chitchat = registry.create("data_source", "chitchat", {"split": split})
    real = [(f"chitchat-{cid}", "chitchat", turns[2:5])
            for cid, _, turns in chitchat.conversations() if len(turns) >= 6]
    shipped, seen_dialogues = [], set()
    for name in ("daily_dialog", "empathetic_dialogues"):
        for ex in registry.create("data_source", name, {"split": split}):
            opening = (name, ex.history[0] if ex.history else "")
            if len(ex.history) == 3 and opening not in seen_dialogues:
                seen_dialogues.add(opening)
                shipped.append((f"{name}-{split}-{len(shipped)}", name, list(ex.history)))
    return real, shipped


def write(name: str, rows: list[dict]) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def casual_block(texts, split: str) -> tuple[list[dict], int, int]:
    """``(contexts, how many from the shipped samples, candidates)`` of the casual block."""
    real, shipped = casual_candidates(split)
    shipped_kept = clean(shipped, texts, N_SHIPPED_CASUAL)
    return (clean(real, texts, N_CASUAL - len(shipped_kept)) + shipped_kept, len(shipped_kept),
            len(real) + len(shipped))


def main() -> None:
    texts = forbidden_texts()
    counts = {}
    for suffix, split in (("", "test"), ("_dev", "validation")):
        candidates = risky_candidates(split)
        risky = clean(candidates, texts, N_RISKY)
        casual, shipped, casual_candidates_n = casual_block(texts, split)
        write(f"risky{suffix}", risky)
        write(f"casual{suffix}", casual)
        counts.update({f"risky{suffix}": len(risky),
                       f"risky{suffix}_candidates": len(candidates),
                       f"casual{suffix}": len(casual), f"casual{suffix}_shipped": shipped,
                       f"casual{suffix}_candidates": casual_candidates_n})
    for block, candidates in table1_candidates().items():
        kept = clean(candidates, texts, len(candidates))
        write(block, kept)
        counts.update({block: len(kept), f"{block}_candidates": len(candidates)})
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
