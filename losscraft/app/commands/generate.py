"""``losscraft generate``: answer a context from the command line or a JSONL file, with or
without reranking, optionally showing every candidate and its scores."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from losscraft.app.friendly_errors import friendly_errors
from losscraft.errors import LosscraftError
from losscraft.recipe.schema import DEFAULT_SCORER

out = Console()


@click.command("generate")
@click.argument("model", default="embedded")
@click.option("-c", "--context", "turns", multiple=True,
              help="A dialog turn (repeat for several, oldest first).")
@click.option("--contexts", "contexts_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="JSONL file with a 'context' per line.")
@click.option("--rerank/--no-rerank", default=False, help="Sample K candidates and rerank them.")
@click.option("-k", "--candidates", default=8, show_default=True, help="Candidates to rerank.")
@click.option("--show-candidates", is_flag=True, help="Print every candidate with its scores.")
@click.option("--scorer", default=DEFAULT_SCORER, show_default=True,
              help="Scorer plugin used by the reranker.")
@click.option("--rot-generator", default=None, help="RoT generator plugin for the reranker "
              "(e.g. rot_retrieval; its bank is ProsocialDialog's train split).")
@click.option("--max-new-tokens", default=48, show_default=True)
@click.option("--temperature", default=0.8, show_default=True)
@click.option("--top-p", default=0.95, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@friendly_errors
def generate_command(model, turns, contexts_file, rerank, candidates, show_candidates, scorer,
                     rot_generator, max_new_tokens, temperature, top_p, seed, device):
    """Answer a context with MODEL (a run folder, a saved model folder, a hub id, or
    'embedded' for the embedded SmolLM2-135M-Instruct)."""
    from losscraft.evaluation.contexts import read_contexts_jsonl
    from losscraft.evaluation.targets import load_model, resolve_target
    from losscraft.generation.decode import generate_responses, sample_and_rerank
    from losscraft.plugins.registry import get_registry

    histories = read_contexts_jsonl(contexts_file) if contexts_file else \
        ([list(turns)] if turns else [])
    if not histories:
        raise LosscraftError("give a context with -c/--context or --contexts FILE")
    policy, tokenizer = load_model(resolve_target(model).location, device=device, param="MODEL")
    gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    reranker = None
    if rerank:
        params = {"scorer": scorer}
        if rot_generator:
            params.update(rot_generator=rot_generator,
                          rot_generator_params={"source": "prosocial_dialog",
                                                "source_params": {"split": "train"}})
        reranker = get_registry().create("reranker", "prosocial_reranker", params)
    for history in histories:
        out.print(f"[bold]context:[/] {' / '.join(history)}", highlight=False)
        if reranker is None:
            reply = generate_responses(policy, tokenizer, [history], **gen)[0][0]
            out.print(f"[green]reply:[/] {reply}", highlight=False)
            continue
        ranked = sample_and_rerank(policy, tokenizer, history, reranker, k=candidates, **gen)
        out.print(f"[green]reply:[/] {ranked[0].text}", highlight=False)
        if show_candidates:
            table = Table(show_lines=False)
            for col in ("#", "score", "fluency", "P(unsafe)", "RoT agr.", "candidate"):
                table.add_column(col)
            for i, c in enumerate(ranked, 1):
                s = c.scores
                table.add_row(str(i), f"{c.score:.3f}", f"{s.get('fluency', 0):.3f}",
                              f"{s.get('p_unsafe', 0):.3f}", f"{s.get('rot_agreement', 0):.3f}",
                              c.text)
            out.print(table)

