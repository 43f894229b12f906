"""The text of the files `losscraft.app.scaffold` writes: one component module per kind (a small
but real implementation, written to be edited), its contract test, the package's
``pyproject.toml`` and README. Placeholders: ``{name}`` (distribution), ``{package}`` (import
package), ``{component}`` (component, entry point and module), ``{cls}``, ``{kind}``."""

OBJECTIVE = '''
    """A loss term: label-smoothed token NLL of the positive reply.

    Edit ``__call__``; keep dividing by a count over the whole optimizer step (``per_token``, a
    `StepMean`), not by the micro-batch's, so gradient accumulation stays exact.
    """

    import torch

    from losscraft import LossOutput, StepContext, StepMean, hookimpl
    from losscraft.errors import RecipeError

    #: the response tokens of the optimizer step
    per_token = StepMean("{component}_tokens", lambda b: b.response_mask.sum())


    class {cls}:
        """Label-smoothed NLL of the positive reply, per response token of the step.

        Args:
            smoothing: weight of the uniform distribution in the target (0 = plain NLL).
        """

        def __init__(self, smoothing: float = 0.1):
            if not 0.0 <= smoothing < 1.0:
                raise RecipeError(f"must be in [0, 1), got {{smoothing}}", key="smoothing")
            self.smoothing = smoothing

        def __call__(self, ctx: StepContext) -> LossOutput:
            batch = ctx.batch
            mask = batch.response_mask
            # at least float32; float64 stays float64 (the bench's reference run of a plugin)
            logp = ctx.logits.log_softmax(-1, dtype=torch.promote_types(ctx.logits.dtype,
                                                                         torch.float32))
            target = batch.targets.clamp(min=0).unsqueeze(-1)
            nll = -logp.gather(-1, target).squeeze(-1)
            uniform = -logp.mean(-1)
            smoothed = (1 - self.smoothing) * nll + self.smoothing * uniform
            value = per_token(ctx, (smoothed * mask).sum())
            return LossOutput(value, {{"tokens": mask.sum()}}, summed=frozenset({{"tokens"}}))


    @hookimpl
    def register_objectives(register):
        register("{component}", {cls})
'''

DATA = '''
    """A data source: dialog examples from a JSONL file, one ``{{"context", "reply"}}`` per line.

    Edit ``__iter__``; raise ``DataError(file=..., row=..., field=...)`` for a bad row and
    ``RecipeError(key=...)`` for a bad parameter.
    """

    import json
    from pathlib import Path

    from losscraft import Example, hookimpl
    from losscraft.errors import DataError, RecipeError


    class {cls}:
        """Examples from a JSONL file of ``{{"context": [turns] | str, "reply": str}}`` lines.

        Args:
            path: the JSONL file.
            only_safe: skip rows whose ``"safe"`` field is false.
        """

        def __init__(self, path: str, only_safe: bool = False):
            if not Path(path).is_file():
                raise RecipeError(f"no such file: {{path}}", key="path")
            self.path, self.only_safe = path, only_safe

        def __iter__(self):
            with open(self.path, encoding="utf-8") as f:
                for row, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        data = json.loads(line)
                    except ValueError as exc:
                        raise DataError(f"not JSON: {{exc}}", file=self.path, row=row) from None
                    context, reply = data.get("context"), data.get("reply")
                    if not isinstance(reply, str) or not reply.strip():
                        raise DataError("expected a non-empty string", file=self.path, row=row,
                                        field="reply")
                    history = [context] if isinstance(context, str) else list(context or [])
                    safe = data.get("safe")
                    if self.only_safe and safe is False:
                        continue
                    yield Example(history=history, response=reply, is_safe=safe,
                                  source="{component}", id=f"{component}:{{row}}")


    @hookimpl
    def register_data_sources(register):
        register("{component}", {cls})
'''

SCORER = '''
    """A scorer: P(unsafe) from a word list.

    Edit ``p_unsafe``; return one probability in [0, 1] per (context, reply) pair, the same
    whether pairs are scored together or one at a time.
    """

    import math

    from losscraft import hookimpl
    from losscraft.errors import PluginError


    class {cls}:
        """P(unsafe) = 1 - exp(-strength * flagged words in the reply).

        Args:
            words: words that make a reply unsafe (lower case).
            strength: how fast the probability grows with each flagged word.
        """

        def __init__(self, words: list[str] | None = None, strength: float = 1.0):
            self.words = {{w.lower() for w in (words or ["idiot", "stupid", "loser"])}}
            self.strength = strength

        def p_unsafe(self, contexts, responses):
            if len(contexts) != len(responses):
                raise PluginError(f"{{len(contexts)}} contexts but {{len(responses)}} responses")
            return [1.0 - math.exp(-self.strength * sum(w.strip(".,!?").lower() in self.words
                                                        for w in reply.split()))
                    for reply in responses]


    @hookimpl
    def register_scorers(register):
        register("{component}", {cls})
'''

RERANKER = '''
    """A reranker: orders candidate replies, best first.

    Edit ``rerank``; return every candidate once as a ``RankedCandidate``, highest score first.
    """

    from losscraft import hookimpl
    from losscraft.plugins.protocols import RankedCandidate


    class {cls}:
        """Prefers replies near a target length that mention the rules-of-thumb' words.

        Args:
            target_words: the preferred reply length in words.
            rot_bonus: score added per word shared with the rules-of-thumb.
        """

        def __init__(self, target_words: int = 12, rot_bonus: float = 0.5):
            self.target_words, self.rot_bonus = target_words, rot_bonus

        def rerank(self, history, candidates, *, rots=None):
            rot_words = {{w.lower() for r in rots or [] for w in r.split()}}
            ranked = []
            for text in candidates:
                words = text.split()
                length = -abs(len(words) - self.target_words) / max(1, self.target_words)
                overlap = self.rot_bonus * sum(w.lower() in rot_words for w in words)
                ranked.append(RankedCandidate(text, length + overlap,
                                              {{"length": length, "rots": overlap}}))
            return sorted(ranked, key=lambda c: c.score, reverse=True)


    @hookimpl
    def register_rerankers(register):
        register("{component}", {cls})
'''

ROT = '''
    """A rules-of-thumb generator: RoTs for dialog histories.

    Edit ``generate``; return one list of RoTs per history (oldest turn first), deterministic.
    """

    from losscraft import hookimpl


    class {cls}:
        """RoTs from keyword rules on the last turn.

        Args:
            rules: keyword -> rule of thumb.
        """

        def __init__(self, rules: dict[str, str] | None = None):
            self.rules = rules or {{"lie": "It's wrong to lie.",
                                   "hurt": "It's wrong to hurt people.",
                                   "steal": "It's wrong to steal."}}

        def generate(self, histories):
            out = []
            for history in histories:
                last = (history[-1] if history else "").lower()
                out.append([rot for word, rot in self.rules.items() if word in last])
            return out


    @hookimpl
    def register_rot_generators(register):
        register("{component}", {cls})
'''

MODEL = '''
    """A model provider: loads a causal LM and its tokenizer from a local folder.

    Edit ``load``; keep ``__init__`` cheap (``losscraft validate`` constructs it without loading).
    """

    from pathlib import Path

    from losscraft import hookimpl
    from losscraft.plugins.protocols import LoadedModel
    from losscraft.errors import RecipeError


    class {cls}:
        """A causal LM saved with ``save_pretrained`` (model + tokenizer with a chat template).

        Args:
            path: the model folder.
        """

        def __init__(self, path: str):
            if not Path(path).is_dir():
                raise RecipeError(f"no such model folder: {{path}}", key="path")
            self.path = path

        def load(self, *, device: str = "cpu", dtype=None) -> LoadedModel:
            from losscraft.models.loading import load_causal_lm

            model, tokenizer = load_causal_lm(self.path, device=device)
            if dtype is not None:
                model = model.to(dtype)
            return LoadedModel(model, tokenizer, self.path)


    @hookimpl
    def register_models(register):
        register("{component}", {cls})
'''

TEMPLATES = {"objective": OBJECTIVE, "data": DATA, "scorer": SCORER,
             "reranker": RERANKER, "rot": ROT, "model": MODEL}

TEST_BODIES = {
    "objective": '''
        def test_contract(tmp_path):
            check_objective("{component}", {{"smoothing": 0.1}}, tmp_path=tmp_path)
    ''',
    "data": '''
        import json


        def test_contract(tmp_path):
            path = tmp_path / "dialogs.jsonl"
            rows = [{{"context": ["hi", "how are you?"], "reply": "Fine, thanks!", "safe": True}},
                    {{"context": "tell me a secret", "reply": "No, sorry.", "safe": False}}]
            path.write_text("".join(json.dumps(r) + "\\n" for r in rows), encoding="utf-8")
            examples = check_data_source("{component}", {{"path": str(path)}}, tmp_path=tmp_path)
            assert len(examples) == 2
    ''',
    "scorer": '''
        def test_contract():
            check_scorer("{component}", {{"words": ["idiot"]}})
    ''',
    "reranker": '''
        def test_contract():
            check_reranker("{component}", {{"target_words": 8}})
    ''',
    "rot": '''
        def test_contract():
            check_rot_generator("{component}")
    ''',
    "model": '''
        def test_contract(tmp_path):
            from losscraft.models.tiny import tiny_model, tiny_tokenizer

            tokenizer = tiny_tokenizer()
            tiny_model(len(tokenizer)).save_pretrained(tmp_path / "lm")
            tokenizer.save_pretrained(tmp_path / "lm")
            check_model_provider("{component}", {{"path": str(tmp_path / "lm")}})
    ''',
}

PYPROJECT = '''
    [build-system]
    requires = ["setuptools>=68"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "{name}"
    version = "0.1.0"
    description = "losscraft plugins"
    readme = "README.md"
    requires-python = ">=3.11"
    dependencies = ["losscraft"]

    [project.optional-dependencies]
    test = ["pytest>=8"]

    # one entry point per component module: `losscraft new-plugin --add-to` adds more
    [project.entry-points.losscraft]
    {component} = "{package}.{component}"

    [tool.setuptools]
    packages = ["{package}"]

    [tool.pytest.ini_options]
    testpaths = ["tests"]
'''

PACKAGE_INIT = '''
    """losscraft plugins: one module per component, each registered through its own entry point
    in ``pyproject.toml`` (``losscraft new-plugin --add-to . --kind KIND --component NAME`` adds
    one)."""
'''

README = '''
    # {name}

    losscraft plugins, one module per component in `{package}/`, each registered through its
    own entry point of the `losscraft` group in `pyproject.toml`.

    ```bash
    losscraft install -e .     # or: pip install -e . into losscraft's environment
    losscraft plugins          # lists {component}
    pytest                     # the losscraft.testing contract of each component
    ```

    Add a component (module, entry point, test), then reinstall so the entry point is seen:

    ```bash
    losscraft new-plugin --add-to . --kind scorer --component my_scorer
    ```

    Use `{component}` ({registry_kind}) in a recipe:

    ```toml
    {usage}
    ```

    Edit `{package}/{component}.py`; `docs/plugins.md` in losscraft is the hook reference.
'''

USAGE = {
    "objective": '[[stages.terms]]\nplugin = "{component}"\nsmoothing = 0.1',
    "data": '[[stages.data]]\nplugin = "{component}"\npath = "data/dialogs.jsonl"',
    "scorer": '[scorer]\nplugin = "{component}"',
    "reranker": '[reranker]\nplugin = "{component}"',
    "rot": '[rot_generator]\nplugin = "{component}"',
    "model": '[model]\nplugin = "{component}"\npath = "models/my_model"',
}
