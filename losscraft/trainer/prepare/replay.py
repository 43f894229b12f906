"""Self-replay: train some of a stage's contexts on the starting model's own replies.

A stage that teaches a new behaviour on one kind of context (guiding replies to risky turns) also
moves the model on every other kind: trained on short guiding replies alone, a chat model answers
casual small talk shorter and in a register its base no longer finds likely. Self-replay is the
rehearsal remedy (self-distillation on the contexts the stage should leave alone): the examples
of the ``[[stages.replay.data]]`` sources join the stage with each reply replaced by a sample of
the stage's *starting* model, so NLL on them holds the model to what it already said there, while
the other examples teach the new behaviour.

Samples are cached per stage in a JSONL file (one row per replayed example, in order) under a key
of everything that decides them — the replay settings, the seed, the context budget and the
example ids — so a resumed run does not sample again and a changed recipe does.

A sample cut off by ``max_new_tokens`` would teach the model to end its turn mid-sentence, so a
sample that does not end a sentence is trimmed to its last complete one; an example whose sample
has no complete sentence (or comes back empty) keeps its original reply.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from losscraft.trainer.prepare.stage_cache import cache_key, read_cached_rows, read_rows, write_cached_rows
from losscraft.plugins.registry import Registry
from losscraft.recipe.schema import Recipe, StageSpec
from losscraft.types import Example

#: the cache file of one stage's replayed replies, under ``<run>/stages/<stage>/``
CACHE_NAME = "replay.jsonl"


#: a sentence end: . ! ? or … , possibly followed by closing quotes/brackets or an emoticon-free
#: run of further end marks
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"')\]\u201d\u2019]*(?=\s|$)")


def whole_sentences(text: str) -> str:
    """``text`` up to the end of its last complete sentence (``""`` when it has none)."""
    text = text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[:ends[-1]] if ends else ""


def _settings_key(recipe: Recipe, stage: StageSpec, chosen: list[Example]) -> str:
    return cache_key([dataclasses.asdict(stage.replay), recipe.run.seed, stage.max_context_tokens,
                      stage.system_prompt, [e.id for e in chosen]])


def replay_examples(model, tokenizer, recipe: Recipe, stage: StageSpec, registry: Registry,
                    cache: Path, *, sources: list | None = None, console: Console | None = None,
                    show_progress: bool = True) -> list[Example]:
    """The examples of ``stage.replay``'s data sources, each reply replaced by a sample of
    ``model`` (see the module docstring); ``[]`` when the stage replays nothing. ``sources``: the
    ``(spec, source)`` pairs `losscraft.recipe.instantiate.build_recipe` built for them (default: built
    here through ``registry``)."""
    from losscraft.generation.decode import generate_responses
    from losscraft.trainer.prepare.stage_data import load_examples

    spec = stage.replay
    if spec is None or not spec.enabled or not spec.data:
        return []
    chosen = load_examples(dataclasses.replace(stage, data=spec.data, name=f"{stage.name}-replay",
                                               key=f"{stage.key}.replay"),
                           recipe.path, registry, sources=sources)
    key = _settings_key(recipe, stage, chosen)
    rows = read_cached_rows(cache, key, len(chosen))
    if rows is not None:
        replies = [row["reply"] for row in rows]
    else:
        with Progress(console=console, disable=not show_progress, transient=True) as progress:
            task = progress.add_task(f"{stage.name}: sampling replay replies", total=len(chosen))
            samples = generate_responses(
                model, tokenizer, [e.history for e in chosen], num_samples=1,
                max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                top_p=spec.top_p, seed=recipe.run.seed, batch_size=spec.batch_size,
                max_context_tokens=stage.max_context_tokens, system=stage.system_prompt or None,
                progress=lambda n: progress.update(task, completed=n))
        replies = [whole_sentences(s[0]) for s in samples]
        write_cached_rows(cache, key, [{"id": ex.id, "reply": reply}
                                       for ex, reply in zip(chosen, replies)])
    return [dataclasses.replace(ex, response=reply, meta={**ex.meta, "replayed": True})
            if reply.strip() else ex
            for ex, reply in zip(chosen, replies)]


def replayed_count(run_dir: str | Path, stage: str) -> int:
    """How many replies the stage ``stage`` of the run in ``run_dir`` replayed (0 without a
    cache)."""
    rows = read_rows(Path(run_dir) / "stages" / stage / CACHE_NAME) or []
    return sum(1 for row in rows if row.get("reply", "").strip())
