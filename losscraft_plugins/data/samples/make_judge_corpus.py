"""Builds the judge corpus and the judge's probe set from the writers' filled-in plans.

Inputs: ``judge/writers/<WRITER>.jsonl`` — situations written to the plans of
``losscraft/judge/writing/plan.py`` by writers who never saw the policy's data (`POOLS`: W1-W12 the
primary pool, S1-S5 the second) — and ``losscraft/judge/probe_writers/P{1,2,3,4}.jsonl`` (the
probe's writers, kept out of the samples folder). Outputs:

- ``judge/<pool>/mic.csv`` and ``judge/<pool>/bad/{train,valid,test}.txt``: the pool in the real
  schemas (see ``losscraft_plugins.data.judge_corpus``), one split per situation by a hash of its
  id (75% train, 5% validation, 20% test);
- ``judge/<pool>/pairs.jsonl``: the same pairs in the probe's schema with their split, writer and
  trap kind (for per-kind held-out metrics);
- ``losscraft/judge/probe_v2.jsonl``: the probe pairs;
- ``judge/manifest.json``: counts, and every situation or reply dropped with the reason.

Each pool also gets real small talk: replies of the ``chitchat-dataset`` wheel's *train*
conversations (even-numbered ones for the primary pool, odd for the second; the held-back casual
block reads its *test* conversations) to their two previous turns, as friendly (safe) pairs,
balanced over the three length buckets — ordinary human replies, so the judges do not read plain
small talk as sarcasm.

Filters, in order: a pair whose context turn or reply equals (after `normalise`) a text the
shipped recipes train on is dropped; a situation whose user turn comes near (MiniLM cosine >= 0.8)
any such text is dropped, and so is a single reply that comes that near; a reply repeated (after
`normalise`) within or across pools is dropped, and so is a pair whose user turn an earlier pool
already has; probe situations and replies are
dropped at cosine >= 0.7 against either judge pool; pairs of writers added after the probe was
fixed (`LATE_WRITERS`) are dropped at cosine >= 0.7 against the probe instead, so the probe stays
as it was. Run from the repository root:
``python losscraft_plugins/data/samples/make_judge_corpus.py``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
WRITERS = HERE / "judge" / "writers"
POOLS = {"primary": ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11", "W12"),
         "second": ("S1", "S2", "S3", "S4", "S5")}
#: writers added after the probe was fixed: their pairs are filtered against the probe (cosine
#: >= PROBE_COSINE to any probe text drops them) so that adding them leaves the probe unchanged
LATE_WRITERS = ("W11", "W12")
PROBE_WRITERS = ("P1", "P2", "P3", "P4")
PROBE_WRITERS_DIR = ROOT / "losscraft" / "judge" / "probe_writers"
PROBE_FILE = ROOT / "losscraft" / "judge" / "probe_v2.jsonl"
POLICY_COSINE, PROBE_COSINE = 0.8, 0.7
#: real small-talk pairs per pool (before filtering), a third per length bucket
CHITCHAT_PAIRS = {"primary": 900, "second": 300}
LENGTH_BUCKETS = ((3, 12), (13, 29), (30, 60))
#: the rule of thumb a MIC row is judged against, per category
CATEGORY_ROTS = {
    "harm_to_others": "It's wrong to physically hurt other people.",
    "self_harm": "You should look after your own safety and ask for help when you're struggling.",
    "dishonesty": "It's wrong to lie to or cheat people who trust you.",
    "cruelty": "It's wrong to bully, humiliate or be cruel to people or animals.",
    "prejudice": "It's wrong to demean or exclude people because of who they are.",
    "dangerous_health": "You shouldn't take serious risks with your health.",
    "illegal": "It's wrong to steal, vandalise or break the law at others' expense.",
    "privacy": "It's wrong to snoop on or track people without their consent.",
    "substance": "It's wrong to misuse drugs or alcohol in ways that endanger anyone.",
    "reckless": "You shouldn't put yourself or others in danger for a thrill.",
    "sabotage": "It's wrong to ruin someone's work, property or reputation.",
    "manipulation": "It's wrong to manipulate or control the people close to you.",
}
AGREES = {"guide": 2, "ignore": 1, "condone": 0}
UNSAFE_KINDS = ("condone", "insult")
BAD_SPLIT_FILES = {"train": "train", "validation": "valid", "test": "test"}


def split_of(situation_id: str) -> str:
    """``test`` (20%), ``validation`` (5%) or ``train`` from a hash of the situation id."""
    bucket = int(hashlib.sha256(situation_id.encode()).hexdigest()[:8], 16) % 20
    return "test" if bucket < 4 else "validation" if bucket == 4 else "train"


def read_writer(name: str, folder: Path = WRITERS) -> list[dict]:
    path = folder / f"{name}.jsonl"
    return [dict(json.loads(s), writer=name) for s in path.read_text("utf-8").splitlines()
            if s.strip()]


def pairs_of(situation: dict) -> list[dict]:
    """The situation's replies as probe-schema pairs."""
    out = []
    for k, reply in enumerate(situation["replies"], 1):
        kind = reply["kind"]
        out.append({"id": f"{situation['id']}-{k}", "situation": situation["id"],
                    "writer": situation["writer"], "category": situation["category"],
                    "context": situation["context"], "reply": reply["text"].strip(),
                    "kind": kind, "trap": reply.get("trap"), "unsafe": kind in UNSAFE_KINDS,
                    "prosocial": (kind == "guide") if kind in AGREES else None})
    return out


def chitchat_pairs(pool: str) -> list[dict]:
    """Friendly pairs from the chitchat train conversations of ``pool`` (see the module doc)."""
    from losscraft.judge.surface import words
    from losscraft.plugins.registry import get_registry

    source = get_registry().create("data_source", "chitchat", {"split": "train"})
    parity = 0 if pool == "primary" else 1
    per_bucket = CHITCHAT_PAIRS[pool] // len(LENGTH_BUCKETS)
    taken: dict[tuple[int, int], list[dict]] = {b: [] for b in LENGTH_BUCKETS}
    for n, (cid, _, turns) in enumerate(source.conversations()):
        if n % 2 != parity or len(turns) < 4:
            continue
        k = 2 + int(hashlib.sha256(cid.encode()).hexdigest()[:4], 16) % (len(turns) - 2)
        reply = turns[k].strip()
        bucket = next((b for b in LENGTH_BUCKETS if b[0] <= words(reply) <= b[1]), None)
        if bucket is None or len(taken[bucket]) >= per_bucket:
            continue
        taken[bucket].append({"id": f"chitchat-{cid}-1", "situation": f"chitchat-{cid}",
                              "writer": f"chitchat-{pool}", "category": "casual",
                              "context": [t.strip() for t in turns[k - 2:k]], "reply": reply,
                              "kind": "friendly", "trap": None, "unsafe": False,
                              "prosocial": None})
        if all(len(v) >= per_bucket for v in taken.values()):
            break
    return [p for bucket in LENGTH_BUCKETS for p in taken[bucket]]


def policy_texts() -> list[str]:
    """Every text the shipped recipes train on (default profiles)."""
    from losscraft.evaluation.training_rows import recipes_texts

    return sorted(recipes_texts(ROOT / "recipes").all_texts)


def filter_pairs(pairs: list[dict], against: list[str], threshold: float,
                 dropped: list[dict], *, seen: set[str]) -> list[dict]:
    """``pairs`` minus repeated replies, minus situations whose user turn is near ``against``,
    minus single replies near ``against``; what goes is recorded in ``dropped``."""
    from losscraft.evaluation.overlap import near_pairs, normalise

    identical = {normalise(t) for t in against}
    turns = [t for p in pairs for t in p["context"]]
    near_turns = {n.text: n for n in near_pairs(turns, against, threshold)}
    near_replies = {n.text: n for n in near_pairs([p["reply"] for p in pairs], against, threshold)}
    kept = []
    for p in pairs:
        hit = next((near_turns[t] for t in p["context"] if t in near_turns), None)
        reason = None
        same = next((t for t in p["context"] + [p["reply"]] if normalise(t) in identical), None)
        if same is not None:
            reason = {"why": "a turn or the reply equals a training text", "text": same}
        elif hit is not None:
            reason = {"why": "context near a training text", "cosine": round(hit.cosine, 3),
                      "neighbour": hit.neighbour}
        elif p["reply"] in near_replies:
            hit = near_replies[p["reply"]]
            reason = {"why": "reply near a training text", "cosine": round(hit.cosine, 3),
                      "neighbour": hit.neighbour}
        elif normalise(p["reply"]) in seen:
            reason = {"why": "repeated reply"}
        if reason is not None:
            dropped.append({"id": p["id"], **reason})
            continue
        seen.add(normalise(p["reply"]))
        kept.append(p)
    return kept


def mic_row(p: dict, n: int) -> dict:
    return {"Q": p["context"][-1], "A": p["reply"], "rot": CATEGORY_ROTS[p["category"]],
            "moral": "care", "A_agrees": AGREES[p["kind"]], "rot-agree": 5,
            "violation-severity": 3, "chatbot": ("blenderbot", "dialoGPT", "gpt-neo")[n % 3],
            "split": {"validation": "dev"}.get(p["split"], p["split"])}


def bad_line(p: dict) -> str:
    text = "\\n".join(t.replace("\t", " ").replace("\n", " ") for t in p["context"] + [p["reply"]])
    label = "__notok__" if p["unsafe"] else "__ok__"
    return "\t".join([f"text:{text}", f"labels:{label}", "episode_done:True",
                      "speaker_to_eval:bot", "bot_persona:"])


def write_pool(name: str, pairs: list[dict]) -> None:
    folder = HERE / "judge" / name
    (folder / "bad").mkdir(parents=True, exist_ok=True)
    mic = [p for p in pairs if p["kind"] in AGREES and len(p["context"]) == 1]
    with open(folder / "mic.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(mic_row(mic[0], 0)))
        writer.writeheader()
        writer.writerows(mic_row(p, n) for n, p in enumerate(mic))
    bad = [p for p in pairs if not (p["kind"] in AGREES and len(p["context"]) == 1)]
    for split, stem in BAD_SPLIT_FILES.items():
        lines = [bad_line(p) for p in bad if p["split"] == split]
        (folder / "bad" / f"{stem}.txt").write_text("".join(s + "\n" for s in lines), "utf-8")
    (folder / "pairs.jsonl").write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), "utf-8")


def counts(pairs: list[dict]) -> dict:
    return {"pairs": len(pairs), "situations": len({p["situation"] for p in pairs}),
            "by_kind": dict(Counter(p["kind"] for p in pairs)),
            "by_split": dict(Counter(p["split"] for p in pairs)),
            "risky_categories": len({p["category"] for p in pairs} - {"casual"})}


def main() -> None:
    from losscraft.evaluation.overlap import normalise

    policy = policy_texts()
    manifest: dict = {"policy_texts": len(policy), "policy_cosine": POLICY_COSINE,
                      "probe_cosine": PROBE_COSINE, "pools": {}, "dropped": {}}
    judge_texts: list[str] = []
    seen: set[str] = set()  # replies of earlier pools: no reply crosses pools either
    earlier_turns: set[str] = set()  # user turns of earlier pools: no situation crosses either
    probe_raw = [p for w in PROBE_WRITERS if (PROBE_WRITERS_DIR / f"{w}.jsonl").is_file()
                 for s in read_writer(w, PROBE_WRITERS_DIR) for p in pairs_of(s)]
    probe_texts = sorted({t for p in probe_raw for t in p["context"] + [p["reply"]]})
    for pool, writers in POOLS.items():
        raw = [p for w in writers if (WRITERS / f"{w}.jsonl").is_file()
               for s in read_writer(w) for p in pairs_of(s)]
        if not raw:
            continue
        dropped: list[dict] = []
        late = [p for p in raw if p["writer"] in LATE_WRITERS]
        if late and probe_texts:
            kept_late = filter_pairs(late, probe_texts, PROBE_COSINE, dropped, seen=set())
            probe_id = {t: p["id"] for p in probe_raw for t in p["context"] + [p["reply"]]}
            for d in dropped:  # name the probe pair, never copy its text into the samples
                d["why"] = "late writer: " + d["why"].replace("training", "probe")
                text = d.pop("neighbour", None) or d.pop("text", None)
                if text is not None:
                    d["probe_pair"] = probe_id[text]
            raw = [p for p in raw if p["writer"] not in LATE_WRITERS] + kept_late
        raw += chitchat_pairs(pool)
        dropped += [{"id": p["id"], "why": "user turn of an earlier pool"}
                    for p in raw if normalise(p["context"][-1]) in earlier_turns]
        raw = [p for p in raw if normalise(p["context"][-1]) not in earlier_turns]
        kept = filter_pairs(raw, policy, POLICY_COSINE, dropped, seen=seen)
        for p in kept:
            p["split"] = split_of(p["situation"])
        write_pool(pool, kept)
        earlier_turns |= {normalise(p["context"][-1]) for p in kept}
        judge_texts += [t for p in kept for t in p["context"]] + [p["reply"] for p in kept]
        manifest["pools"][pool] = {"writers": list(writers), "written": len(raw), **counts(kept)}
        manifest["dropped"][pool] = dropped
    raw = probe_raw
    if raw:
        dropped = []
        kept = filter_pairs(raw, judge_texts, PROBE_COSINE, dropped, seen=set())
        for p in kept:
            p.pop("situation")
        PROBE_FILE.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in kept),
                              "utf-8")
        manifest["probe"] = {"writers": list(PROBE_WRITERS), "written": len(raw),
                             "pairs": len(kept), "contexts": len({tuple(p["context"])
                                                                  for p in kept}),
                             "by_kind": dict(Counter(p["kind"] for p in kept)),
                             "by_trap": dict(Counter(p["trap"] for p in kept if p["trap"]))}
        manifest["dropped"]["probe"] = dropped
    (HERE / "judge" / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")
    print(json.dumps({k: v for k, v in manifest.items() if k != "dropped"}, indent=1))


if __name__ == "__main__":
    main()
