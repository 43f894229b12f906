"""Writes the project's casual-dialog samples in their Hugging Face schemas, deterministically.

Forty short, mild conversations (filled-in templates written by the project) rendered four ways,
one JSONL row per record exactly as the hub datasets' rows look:

- ``daily_dialog/{train,validation,test}.jsonl``: ``dialog`` (turns, DailyDialog's spaced
  punctuation), ``act`` and ``emotion`` (class-label ids per turn).
- ``empathetic_dialogues/{train,validation,test}.jsonl``: one row per utterance: ``conv_id``,
  ``utterance_idx`` (1-based), ``context`` (emotion), ``prompt``, ``speaker_idx``, ``utterance``,
  ``selfeval``, ``tags``; commas written as ``_comma_``; rows of a split are shuffled.
- ``persona_chat/{train,validation}.jsonl`` (``bavard/personachat_truecased``): one row per reply
  of the persona speaker: ``personality``, ``candidates`` (distractors, gold reply last),
  ``history``, ``conv_id``, ``utterance_idx``.
- ``blended_skill_talk/{train,validation,test}.jsonl``: ``personas``, ``additional_context``,
  ``previous_utterance``, ``context``, ``free_messages``, ``guided_messages``, ``suggestions``,
  ``guided_chosen_suggestions``, ``label_candidates``.

Splits go by template, not by conversation: the conversations of ``TEST_TEMPLATES`` are every
source's test split (persona_chat's validation split), those of ``VALIDATION_TEMPLATES`` the
validation split, so a held-back context shares no turn with a training row (slot fills alone
would leave whole template sentences shared).

Run: ``python make_casual_dialogs.py`` (rewrites the folders next to this script).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent
N_CONVERSATIONS = 40

# (emotion, situation prompt, turns); {slots} are filled from SLOTS.
TEMPLATES = [
    ("excited", "I got tickets to see {band} with my {relative}.", [
        "I got tickets to see {band} next {day}!", "No way, that's great! Who are you going with?",
        "My {relative}. We've wanted to go for years.",
        "You'll have a blast. Do you know the songs?",
        "Most of them, I've been listening all week.", "Take some pictures for me!"]),
    ("proud", "My {relative} just graduated from nursing school.", [
        "My {relative} just graduated from nursing school.",
        "Congratulations to them! You must be proud.",
        "I really am, they worked so hard.", "What are they planning next?",
        "They start at the hospital in {month}.", "That's wonderful news."]),
    ("nostalgic", "I found my old {toy} in the attic and remembered being a kid.", [
        "I found my old {toy} in the attic today.", "Oh, that must have brought back memories.",
        "It did. I used to play with it every day after school.", "Are you going to keep it?",
        "Definitely, maybe I'll give it to my {relative} someday."]),
    ("anxious", "I have a job interview on {day} and I can't stop thinking about it.", [
        "I have a job interview on {day} and I'm nervous.",
        "That's understandable. What's the job?",
        "It's a {job} position at a small company.",
        "You'll do fine. Have you practiced some answers?",
        "A little, I'll practice more tonight.", "Good luck, I'm sure you'll do great."]),
    ("grateful", "My neighbour helped me carry groceries in the rain.", [
        "My neighbour helped me carry groceries in the rain today.", "That was kind of them.",
        "It really was. I'm going to bake them some {food}.", "I bet they'll love that."]),
    ("disappointed", "The {place} I wanted to visit was closed when I got there.", [
        "The {place} I wanted to visit was closed today.",
        "Oh no, that's a shame. Why was it closed?",
        "They were repairing the roof.", "Maybe you can go next {day}?",
        "Yes, I'll try again then."]),
    ("surprised", "I ran into my old friend {name} at the {place}.", [
        "I ran into my old friend {name} at the {place}!",
        "What a coincidence! How long has it been?",
        "Almost ten years.", "Did you catch up?", "We had coffee and talked for hours.",
        "That sounds lovely."]),
    ("content", "A quiet evening at home, deciding what to cook.", [
        "What are you making for dinner tonight?", "I'm thinking {food}. How about you?",
        "Probably soup, it's cold out.", "Good idea, soup is perfect for this weather."]),
    ("annoyed", "The bus was late again and I missed the start of a meeting.", [
        "The bus was late again this morning.", "That's frustrating. Were you late for work?",
        "Only by ten minutes, but still.", "Maybe try the earlier bus?", "I might have to."]),
    ("hopeful", "I started learning {skill} and I hope to get good at it.", [
        "I started learning {skill} this month.", "That's great! How is it going?",
        "Slowly, but I practice every evening.", "Consistency is the key. Keep it up!",
        "Thanks, I'll try."]),
]
SLOTS = {
    "band": ["the Lumineers", "a jazz trio", "my favorite folk band", "an orchestra"],
    "day": ["Friday", "Saturday", "Monday", "Thursday"],
    "relative": ["sister", "brother", "cousin", "best friend"],
    "month": ["June", "September", "March"],
    "toy": ["teddy bear", "toy train", "kite", "board game"],
    "job": ["librarian", "designer", "cook", "teacher"],
    "food": ["banana bread", "cookies", "lasagna", "apple pie"],
    "place": ["museum", "farmers market", "bookshop", "park cafe"],
    "name": ["Maya", "Tom", "Priya", "Lucas"],
    "skill": ["the piano", "Spanish", "pottery", "chess"],
}
PERSONA_LINES = [
    "I love hiking in the mountains.", "I have two cats.", "I work as a baker.",
    "I am learning to play the guitar.",
    "I grew up near the ocean.", "My favorite food is noodles.",
    "I volunteer at an animal shelter.", "I read a mystery novel every week.",
    "I am training for a marathon.", "I like to paint landscapes.",
]
SKILLS = ("convai2", "empathetic_dialogues", "wizard_of_wikipedia")
# DailyDialog class-label ids.
DD_EMOTION = {"excited": 4, "proud": 4, "grateful": 4, "hopeful": 4, "nostalgic": 0,
              "content": 0, "anxious": 3, "disappointed": 5, "surprised": 6, "annoyed": 1}


def conversations(rng: random.Random) -> list[dict]:
    out = []
    for i in range(N_CONVERSATIONS):
        emotion, prompt, turns = TEMPLATES[i % len(TEMPLATES)]
        fill = {k: rng.choice(v) for k, v in SLOTS.items()}
        out.append({"emotion": emotion, "prompt": prompt.format(**fill), "template": i % len(TEMPLATES),
                    "turns": [t.format(**fill) for t in turns]})
    rng.shuffle(out)
    return out


#: templates held back from training in every source: their conversations are the test split
#: (validation for persona_chat, which has no test split), so no held-back turn is trained on
TEST_TEMPLATES = (3, 8)
VALIDATION_TEMPLATES = (5,)


def splits(items: list, names: tuple[str, ...]) -> dict[str, list]:
    """Conversations by split, whole templates at a time (see `TEST_TEMPLATES`)."""
    def split_of(conv: dict) -> str:
        if conv["template"] in TEST_TEMPLATES:
            return "test" if "test" in names else "validation"
        return "validation" if conv["template"] in VALIDATION_TEMPLATES else "train"

    return {name: [c for c in items if split_of(c) == name] for name in names}


def split_turns(parts: dict[str, list], split: str) -> list[str]:
    """The turns distractors and suggestions of ``split`` are drawn from: training turns for the
    train split, held-back turns for the others, so no held-back turn appears in training rows."""
    return [t for name, items in parts.items() if (name == "train") == (split == "train")
            for c in items for t in c["turns"]]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def dd_tokenize(text: str) -> str:
    return re.sub(r"\s*([,.!?])", r" \1", text).strip() + " "


def dd_act(text: str) -> int:  # 1 inform, 2 question, 3 directive, 4 commissive
    if text.endswith("?"):
        return 2
    if text.startswith(("Take", "Maybe", "Good luck", "Keep")):
        return 3
    return 4 if "I'll" in text else 1


def daily_dialog(convs: list[dict]) -> None:
    for split, items in splits(convs, ("train", "validation", "test")).items():
        rows = [{"dialog": [dd_tokenize(t) for t in c["turns"]],
                 "act": [dd_act(t) for t in c["turns"]],
                 "emotion": [DD_EMOTION[c["emotion"]] if j == 0 else 0
                             for j in range(len(c["turns"]))]} for c in items]
        write_jsonl(HERE / "daily_dialog" / f"{split}.jsonl", rows)


def empathetic_dialogues(convs: list[dict], rng: random.Random) -> None:
    hit = 0
    for split, items in splits(convs, ("train", "validation", "test")).items():
        rows = []
        for c in items:
            conv_id = f"hit:{hit}_conv:{2 * hit + 1}"
            speakers = rng.sample(range(1, 400), 2)
            for j, turn in enumerate(c["turns"], 1):
                rows.append({"conv_id": conv_id, "utterance_idx": j, "context": c["emotion"],
                             "prompt": c["prompt"].replace(",", "_comma_"),
                             "speaker_idx": speakers[(j - 1) % 2],
                             "utterance": turn.replace(",", "_comma_"),
                             "selfeval": "5|5|5_4|4|5" if hit % 2 else "", "tags": ""})
            hit += 1
        rng.shuffle(rows)  # conversations are rebuilt from conv_id + utterance_idx
        write_jsonl(HERE / "empathetic_dialogues" / f"{split}.jsonl", rows)


def persona_chat(convs: list[dict], rng: random.Random) -> None:
    conv_id = 0
    parts = splits(convs, ("train", "validation"))
    for split, items in parts.items():
        all_turns = split_turns(parts, split)
        rows = []
        for c in items:
            personality = rng.sample(PERSONA_LINES, 4)
            turns = c["turns"]
            for k, j in enumerate(range(1, len(turns), 2)):
                distractors = rng.sample([t for t in all_turns if t not in turns], 4)
                rows.append({"personality": personality, "candidates": distractors + [turns[j]],
                             "history": turns[:j], "conv_id": conv_id, "utterance_idx": k})
            conv_id += 1
        write_jsonl(HERE / "persona_chat" / f"{split}.jsonl", rows)


def blended_skill_talk(convs: list[dict], rng: random.Random) -> None:
    parts = splits(convs, ("train", "validation", "test"))
    for split, items in parts.items():
        all_turns = split_turns(parts, split)
        rows = []
        for c in items:
            turns = c["turns"]
            rest = turns[2:2 + 2 * ((len(turns) - 2) // 2)]
            free, guided = rest[0::2], rest[1::2]
            source = rng.choice(list(SKILLS))
            chosen = [rng.choice(["", "convai2", "empathetic_dialogues"]) for _ in guided]
            persona_lines = rng.sample(PERSONA_LINES, 4)
            others = [t for t in all_turns if t not in turns]
            rows.append({
                "personas": ["\n".join(persona_lines[:2]), "\n".join(persona_lines[2:])],
                "additional_context": c["prompt"] if source == "empathetic_dialogues" else "",
                "previous_utterance": turns[:2],
                "context": source,
                "free_messages": free,
                "guided_messages": guided,
                "suggestions": {k: [rng.choice(others) for _ in guided] for k in SKILLS},
                "guided_chosen_suggestions": chosen,
                "label_candidates": [] if split == "train" else
                [rng.sample(others, 4) + [g] for g in guided],
            })
        write_jsonl(HERE / "blended_skill_talk" / f"{split}.jsonl", rows)


def main() -> None:
    convs = conversations(random.Random("casual-sample"))
    daily_dialog(convs)
    empathetic_dialogues(conversations(random.Random("ed-sample")), random.Random("ed"))
    persona_chat(conversations(random.Random("pc-sample")), random.Random("pc"))
    blended_skill_talk(conversations(random.Random("bst-sample")), random.Random("bst"))


if __name__ == "__main__":
    main()
