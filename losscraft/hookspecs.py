"""Hook specifications: one per kind of component a recipe can name.

Every hook takes a ``register`` callback: ``register(name, factory)``. ``factory`` is a class or
function whose keyword parameters are the component's recipe parameters; `losscraft validate`
binds a recipe's table against its signature before any weight is loaded, so keep construction
cheap (check paths, store settings) and do heavy work later (``load()``, ``__iter__``, first call).

What each factory must return:

- objective  -> a `losscraft.core.Loss` (called with a `StepContext`).
- data source -> an iterable of `losscraft.types.Example`.
- model      -> a `losscraft.models.ModelProvider` (``load(device=..., dtype=...)``).
- scorer     -> a `losscraft.scoring.Scorer` (``p_unsafe(contexts, responses)``).
- reranker   -> a `losscraft.scoring.Reranker` (``rerank(history, candidates, ...)``).
- rot generator -> a `losscraft.scoring.RotGenerator` (``generate(histories)``).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("losscraft")
hookimpl = pluggy.HookimplMarker("losscraft")


@hookspec
def register_objectives(register):
    """Register loss terms: ``register("nll", NLLLoss)``."""


@hookspec
def register_data_sources(register):
    """Register data sources: ``register("prosocial_dialog", ProsocialDialogSource)``."""


@hookspec
def register_models(register):
    """Register model/expert providers: ``register("hf", HFModel)``."""


@hookspec
def register_scorers(register):
    """Register safety scorers: ``register("profanity_check", ProfanityScorer)``."""


@hookspec
def register_rerankers(register):
    """Register rerankers: ``register("prosocial", ProsocialReranker)``."""


@hookspec
def register_rot_generators(register):
    """Register rules-of-thumb generators: ``register("retrieval", RetrievalRoTs)``."""
