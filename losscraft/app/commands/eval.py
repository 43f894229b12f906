"""The ``losscraft eval`` and ``losscraft compare`` commands (registered by
`losscraft.app.commands`). Thin: parse options, call `evaluate_target` / `compare`, print."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from losscraft.app.commands.options import parse_params
from losscraft.app.friendly_errors import friendly_errors
from losscraft.recipe.schema import DEFAULT_SCORER


@click.command("eval")
@click.argument("target")
@click.option("--contexts", "contexts_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSONL test contexts: one {\"context\": str | [turns]} per line.")
@click.option("--source", help="A registered data source to take test contexts from.")
@click.option("--source-param", "source_params", multiple=True, metavar="KEY=VALUE",
              help="Parameter of --source (repeatable), e.g. split=test.")
@click.option("--max-contexts", type=click.IntRange(min=1), help="Use the first N contexts.")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Replies sampled per context.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="A reply is toxic when P(unsafe) > threshold.")
@click.option("--scorer", default=DEFAULT_SCORER, show_default=True,
              help="Registered safety scorer (default: the safety judge; profanity_check is the "
                   "lexical floor).")
@click.option("--scorer-param", "scorer_params", multiple=True, metavar="KEY=VALUE",
              help="Parameter of --scorer (repeatable).")
@click.option("--reference", default="embedded", show_default=True,
              help="Reference LM for perplexity: 'embedded', a model folder, a hub id, or 'none'.")
@click.option("--rerank/--no-rerank", default=False, show_default=True,
              help="Each reply is the reranker's best of --rerank-candidates samples.")
@click.option("--reranker", default="prosocial_reranker", show_default=True, help="Registered reranker.")
@click.option("--reranker-param", "reranker_params", multiple=True, metavar="KEY=VALUE",
              help="Parameter of --reranker (repeatable). Note the prosocial reranker scores with "
                   "the safety judge by default, the same scorer eval uses: give it another one "
                   "(scorer=...) to avoid reranking on the metric itself.")
@click.option("--rerank-candidates", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95,
              show_default=True)
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True,
              help="0 disables top-k filtering.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=48, show_default=True)
@click.option("--max-context-tokens", type=click.IntRange(min=1), default=None,
              help="Drop the oldest context turns beyond this many tokens.")
@click.option("--batch-size", type=click.IntRange(min=1), default=48, show_default=True,
              help="Sequences per forward pass.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--label", help="Model name in reports and comparisons (default: from TARGET).")
@click.option("--dataset", help="Test-set name in comparisons (default: file stem / source).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: RUN/eval/<dataset> or eval/<model>/<dataset>).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@friendly_errors
def eval_command(target, contexts_file, source, source_params, max_contexts, k, threshold,
                 scorer, scorer_params, reference, rerank, reranker, reranker_params,
                 rerank_candidates, seed, temperature, top_p,
                 top_k, max_new_tokens, max_context_tokens, batch_size, device, label, dataset,
                 out_dir, progress):
    """Evaluate TARGET (a run directory, a model folder, 'embedded' or a hub id): sample --k
    replies per test context and report toxicity, perplexity and diversity (FlatGD §4.1)."""
    from losscraft.app.evaluate_target import evaluate_target
    from losscraft.app.reports.eval_report import fmt, metric_rows, probe_rows

    if (contexts_file is None) == (source is None):
        raise click.UsageError("give exactly one of --contexts FILE or --source NAME")
    if source_params and source is None:
        raise click.UsageError("--source-param needs --source")
    result, paths = evaluate_target(
        target, contexts_file=contexts_file, source=source,
        source_params=parse_params(source_params, "--source-param"), max_contexts=max_contexts,
        scorer=scorer, scorer_params=parse_params(scorer_params, "--scorer-param"),
        reference=None if reference == "none" else reference, rerank=rerank, reranker=reranker,
        reranker_params=parse_params(reranker_params, "--reranker-param"),
        rerank_candidates=rerank_candidates, device=device, label=label,
        dataset=dataset, out_dir=out_dir, progress=progress, k=k, threshold=threshold, seed=seed,
        temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
        max_context_tokens=max_context_tokens, batch_size=batch_size)
    table = Table(title=f"{result.model} on {result.dataset}")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    for _, name, value in metric_rows(result.metrics):
        table.add_row(name, fmt(value))
    for _, name, value in probe_rows(result.info.get("judge_probe")):
        table.add_row(f"judge probe: {name}", fmt(value))
    console = Console()
    console.print(table)
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")


@click.command("compare")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path), metavar="RUN_OR_EVAL...")
@click.option("--w", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="Weight of toxicity in the trade-off factors.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("comparison"), show_default=True)
@friendly_errors
def compare_command(paths, w, out_dir):
    """Compare evaluations (eval.json files, or run directories holding them): Table 1
    (toxicity per test set), toxicity trade-off factors vs fluency and diversity, plots."""
    from losscraft.app.reports.compare import compare

    console = Console()
    comparison = compare(list(paths), w=w, out_dir=out_dir, console=console)
    for kind, path in comparison.files.items():
        console.print(f"{kind}: {path}")
