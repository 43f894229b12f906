"""``losscraft new-plugin NAME --kind KIND``: write a working plugin package.

The package has one name throughout (distribution ``my-losses`` -> module, entry point and
component ``my_losses``): a ``pyproject.toml`` with the ``losscraft`` entry point, the component
module (a small but real implementation of its kind, written to be edited), ``tests/`` that run
the kind's `losscraft.testing` contract check, and a README. Its tests pass right after
``pip install -e .``.
"""

from __future__ import annotations

import keyword
import re
import textwrap
from pathlib import Path

from losscraft.errors import LosscraftError

#: --kind value -> (registry kind, hook name, contract check)
KINDS = {
    "objective": ("objective", "register_objectives", "check_objective"),
    "data": ("data_source", "register_data_sources", "check_data_source"),
    "scorer": ("scorer", "register_scorers", "check_scorer"),
    "reranker": ("reranker", "register_rerankers", "check_reranker"),
    "rot": ("rot_generator", "register_rot_generators", "check_rot_generator"),
    "model": ("model", "register_models", "check_model_provider"),
}


class ScaffoldError(LosscraftError):
    """The plugin cannot be written (bad name, folder exists)."""


def module_name(name: str) -> str:
    """The module / entry point / component name of distribution ``name`` (``my-losses`` ->
    ``my_losses``); `ScaffoldError` unless it is a valid Python identifier."""
    module = re.sub(r"[^0-9a-zA-Z_]+", "_", name.strip()).strip("_").lower()
    if not module or not module.isidentifier() or keyword.iskeyword(module) \
            or module[0].isdigit():
        raise ScaffoldError(f"'{name}' does not make a Python module name; use letters, digits, "
                            "'-' and '_', starting with a letter (e.g. my-losses)")
    if module in ("losscraft", "losscraft_plugins", "test", "tests"):
        raise ScaffoldError(f"'{name}' would shadow an existing module; pick another name")
    return module


_OBJECTIVE = '''
    """A loss term: label-smoothed token NLL of the positive reply.

    Edit ``__call__``; keep dividing by a count over the whole optimizer step (``per_token``, a
    `StepMean`), not by the micro-batch's, so gradient accumulation stays exact.
    """

    from losscraft import LossOutput, StepContext, StepMean, hookimpl
    from losscraft.errors import RecipeError

    #: the response tokens of the optimizer step
    per_token = StepMean("{module}_tokens", lambda b: b.response_mask.sum())


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
            logp = ctx.logits.float().log_softmax(-1)
            target = batch.targets.clamp(min=0).unsqueeze(-1)
            nll = -logp.gather(-1, target).squeeze(-1)
            uniform = -logp.mean(-1)
            smoothed = (1 - self.smoothing) * nll + self.smoothing * uniform
            value = per_token(ctx, (smoothed * mask).sum())
            return LossOutput(value, {{"tokens": mask.sum()}}, summed=frozenset({{"tokens"}}))


    @hookimpl
    def register_objectives(register):
        register("{module}", {cls})
'''

_DATA = '''
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
                                  source="{module}", id=f"{module}:{{row}}")


    @hookimpl
    def register_data_sources(register):
        register("{module}", {cls})
'''

_SCORER = '''
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
        register("{module}", {cls})
'''

_RERANKER = '''
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
        register("{module}", {cls})
'''

_ROT = '''
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
        register("{module}", {cls})
'''

_MODEL = '''
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
        register("{module}", {cls})
'''

_TEMPLATES = {"objective": _OBJECTIVE, "data": _DATA, "scorer": _SCORER,
              "reranker": _RERANKER, "rot": _ROT, "model": _MODEL}

_TEST_BODIES = {
    "objective": '''
        def test_contract(tmp_path):
            check_objective("{module}", {{"smoothing": 0.1}}, tmp_path=tmp_path)
    ''',
    "data": '''
        import json


        def test_contract(tmp_path):
            path = tmp_path / "dialogs.jsonl"
            rows = [{{"context": ["hi", "how are you?"], "reply": "Fine, thanks!", "safe": True}},
                    {{"context": "tell me a secret", "reply": "No, sorry.", "safe": False}}]
            path.write_text("".join(json.dumps(r) + "\\n" for r in rows), encoding="utf-8")
            examples = check_data_source("{module}", {{"path": str(path)}}, tmp_path=tmp_path)
            assert len(examples) == 2
    ''',
    "scorer": '''
        def test_contract():
            check_scorer("{module}", {{"words": ["idiot"]}})
    ''',
    "reranker": '''
        def test_contract():
            check_reranker("{module}", {{"target_words": 8}})
    ''',
    "rot": '''
        def test_contract():
            check_rot_generator("{module}")
    ''',
    "model": '''
        def test_contract(tmp_path):
            from losscraft.models.tiny import tiny_model, tiny_tokenizer

            tokenizer = tiny_tokenizer()
            tiny_model(len(tokenizer)).save_pretrained(tmp_path / "lm")
            tokenizer.save_pretrained(tmp_path / "lm")
            check_model_provider("{module}", {{"path": str(tmp_path / "lm")}})
    ''',
}

_PYPROJECT = '''
    [build-system]
    requires = ["setuptools>=68"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "{name}"
    version = "0.1.0"
    description = "A losscraft {kind} plugin"
    readme = "README.md"
    requires-python = ">=3.11"
    dependencies = ["losscraft"]

    [project.optional-dependencies]
    test = ["pytest>=8"]

    # entry point, module and component share one name
    [project.entry-points.losscraft]
    {module} = "{module}"

    [tool.setuptools]
    py-modules = ["{module}"]

    [tool.pytest.ini_options]
    testpaths = ["tests"]
'''

_README = '''
    # {name}

    A losscraft {kind} plugin: component `{module}` ({registry_kind}),
    registered through the `losscraft` entry point `{module}`.

    ```bash
    pip install -e .
    losscraft plugins          # lists {module}
    pytest                     # the losscraft.testing contract for a {registry_kind}
    ```

    Use it in a recipe:

    ```toml
    {usage}
    ```

    Edit `{module}.py`; `docs/plugins.md` in losscraft is the hook reference.
'''

_USAGE = {
    "objective": '[[stages.terms]]\nplugin = "{module}"\nsmoothing = 0.1',
    "data": '[[stages.data]]\nplugin = "{module}"\npath = "data/dialogs.jsonl"',
    "scorer": '[scorer]\nplugin = "{module}"',
    "reranker": '[reranker]\nplugin = "{module}"',
    "rot": '[rot_generator]\nplugin = "{module}"',
    "model": '[model]\nplugin = "{module}"\npath = "models/my_model"',
}


def _render(template: str, **values: str) -> str:
    return textwrap.dedent(template).lstrip("\n").format(**values)


def new_plugin(name: str, kind: str, parent: str | Path = ".") -> Path:
    """Write the plugin package ``name`` of ``kind`` (a key of `KINDS`) into ``parent/name``
    and return that folder. `ScaffoldError` if the name is unusable or the folder exists."""
    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind '{kind}' (kinds: {', '.join(KINDS)})")
    module = module_name(name)
    folder = Path(parent) / name
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists; choose another name or remove it")
    registry_kind, _hook, check = KINDS[kind]
    cls = "".join(part.capitalize() for part in module.split("_")) or "Component"
    values = {"name": name, "module": module, "cls": cls, "kind": kind,
              "registry_kind": registry_kind.replace("_", " ")}
    values["usage"] = _USAGE[kind].format(**values)
    files = {
        "pyproject.toml": _render(_PYPROJECT, **values),
        "README.md": _render(_README, **values),
        f"{module}.py": _render(_TEMPLATES[kind], **values),
        "tests/conftest.py": 'pytest_plugins = ["losscraft.testing.fixtures"]\n',
        f"tests/test_{module}.py": (f'"""The losscraft contract for `{module}`."""\n\n'
                                    f"from losscraft.testing import {check}\n\n\n"
                                    + _render(_TEST_BODIES[kind], **values)),
    }
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder
