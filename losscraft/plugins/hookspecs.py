"""Hook specifications: one per kind of component a recipe can name, plus ``register_commands``.

The full reference — arguments, what each factory returns, error conventions, reserved keys, a
minimal example per hook and a complete plugin ``pyproject.toml`` — is ``docs/plugins.md``.

Every component hook takes a ``register`` callback: ``register(name, factory, *, aliases=(),
replaces=False)``. ``factory`` is a class or function whose keyword parameters are the
component's recipe parameters; `losscraft validate` checks a recipe's table against its
signature and annotations before any weight is loaded, so keep construction cheap (check paths,
store settings) and do heavy work later (``load()``, ``__iter__``, first call).

What each factory must return:

- objective  -> a `losscraft.core.Loss` (called with a `losscraft.core.StepContext`).
- data source -> a `losscraft.plugins.protocols.DataSource` (re-iterable `losscraft.types.Example`s).
- model      -> a `losscraft.plugins.protocols.ModelProvider` (``load(device=..., dtype=...)``).
- scorer     -> a `losscraft.plugins.protocols.Scorer` (``p_unsafe(contexts, responses)``).
- reranker   -> a `losscraft.plugins.protocols.Reranker` (``rerank(history, candidates, rots=...)``).
- rot generator -> a `losscraft.plugins.protocols.RotGenerator` (``generate(histories)``).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("losscraft")
hookimpl = pluggy.HookimplMarker("losscraft")


@hookspec
def register_objectives(register):
    """Register loss terms: ``register("nll", NLLLoss)``. The factory returns a
    `losscraft.core.Loss`."""


@hookspec
def register_data_sources(register):
    """Register data sources: ``register("prosocial_dialog", ProsocialDialogSource)``. The
    factory returns a `losscraft.plugins.protocols.DataSource`."""


@hookspec
def register_models(register):
    """Register model/expert providers: ``register("hf", HFModel)``. The factory returns a
    `losscraft.plugins.protocols.ModelProvider`."""


@hookspec
def register_scorers(register):
    """Register safety scorers: ``register("profanity_check", ProfanityScorer)``. The factory
    returns a `losscraft.plugins.protocols.Scorer`."""


@hookspec
def register_rerankers(register):
    """Register rerankers: ``register("prosocial_reranker", ProsocialReranker)``. The factory
    returns a `losscraft.plugins.protocols.Reranker`."""


@hookspec
def register_rot_generators(register):
    """Register rules-of-thumb generators: ``register("rot_retrieval", RetrievalRoTs)``. The
    factory returns a `losscraft.plugins.protocols.RotGenerator`."""


@hookspec
def register_commands(cli):
    """Add commands to the ``losscraft`` command line: ``cli`` is its `click.Group`, so
    ``@cli.command()`` (or ``cli.add_command(cmd)``) registers one. Called once, when the command
    line starts; the built-in ``eval``, ``compare``, ``generate``, ``run-all``, ``score`` and
    ``judge`` commands register this way too."""
