"""Scorer ``safety_judge``: the default judge — P(unsafe) and P(prosocial) of a reply in context.

A (context, reply) classifier with the labels safe / unsafe / prosocial (see
``losscraft/judge/judge.toml``): a fine-tuned cross-encoder (the default) or a linear head over
frozen sentence embeddings, whichever the folder holds. With no ``path`` it uses one of the
project's shipped judges (``judge = "default"``, or ``"second"``: trained on a disjoint writer
pool), made ready in the cache on first use (`losscraft.judge.judge_dir`); with ``path`` it loads
any judge folder that recipe produced (``<run>/final``). Encoding settings
(``max_length``, pair input, turn separator) are read from the ``metrics.json`` written beside
``final/`` when present, so the scorer feeds the model exactly what it was trained on.

``p_prosocial`` is what tells "guides" from "ignores" among safe replies to a risky context;
``probe_metrics`` returns the judge's measured accuracy on the probe set written apart from its
training data, so reports can print how far to trust it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from losscraft.plugins.protocols import Context
from losscraft.errors import ModelError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.judge.embedding_pair import EmbeddingPairClassifier, is_pair_head_folder
from losscraft_plugins.scoring.common import check_same_length, minilm_embedder
from losscraft_plugins.scoring.hf_classifier import HFClassifierScorer

PROSOCIAL_LABEL = "prosocial"


class SafetyJudge(HFClassifierScorer):
    """P(unsafe) and P(prosocial) from a three-label judge.

    Args:
        path: a judge's model folder (e.g. ``runs/safety_judge/final``); default a shipped judge.
        judge: which shipped judge without ``path``: ``default`` or ``second``.
        batch_size: pairs per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"``.
    """

    name = "safety_judge"

    def __init__(self, path: str | None = None, judge: str = "default", batch_size: int = 32,
                 device: str = "cpu"):
        from losscraft.judge.default import RECIPES

        if judge not in RECIPES:
            raise RecipeError(f"expected one of {sorted(RECIPES)}, got {judge!r}", key="judge")
        self._given_path, self.judge = path, judge
        self._pair: EmbeddingPairClassifier | None = None
        # construction stays cheap: the default judge's folder is resolved (and trained if need
        # be) on the first call, never by `losscraft validate`
        super().__init__(path or ".", batch_size=batch_size, device=device)

    def _judge_dir(self) -> Path:
        if self._given_path:
            return Path(self._given_path).parent
        from losscraft.judge.default import judge_dir

        return judge_dir(self.judge)

    def _metrics(self) -> dict:
        try:
            return json.loads((self._judge_dir() / "metrics.json").read_text())
        except (OSError, ValueError):
            return {}

    def _load(self) -> None:
        folder = self._judge_dir()
        self.path = self._given_path or str(folder / "final")
        if is_pair_head_folder(self.path):
            self._pair = EmbeddingPairClassifier.load(
                self.path, embedder=minilm_embedder(self.device), device=self.device)
            self._model = self._pair  # marks the scorer as loaded
            self._check_labels({name: i for i, name in enumerate(self._pair.labels)})
            return
        settings = self._metrics().get("encoding", {})
        self.max_length = settings.get("max_length", self.max_length)
        self.pair_input = settings.get("pair_input", self.pair_input)
        self.turn_separator = settings.get("turn_separator", self.turn_separator)
        super()._load()
        self._check_labels({str(v).lower(): int(k)
                            for k, v in self._model.config.id2label.items()})

    def _check_labels(self, labels: dict[str, int]) -> None:
        if PROSOCIAL_LABEL not in labels or "unsafe" not in labels:
            raise ModelError(f"{self.path} is not a safety judge: its labels are "
                             f"{sorted(labels)}, expected safe / unsafe / prosocial (train one "
                             "with losscraft/judge/judge.toml, or use scorer 'hf_classifier')")
        self.unsafe_index, self.prosocial_index = labels["unsafe"], labels[PROSOCIAL_LABEL]

    def label_probs(self, contexts: Sequence[Context], responses: Sequence[str]):
        """``(N, 3)`` probabilities of safe / unsafe / prosocial (the last call's are reused)."""
        if self._model is None:
            self._load()
        if self._pair is None:
            return super().label_probs(contexts, responses)
        check_same_length(contexts, responses, f"scorer '{self.name}'")
        key = (tuple(map(str, contexts)), tuple(responses))
        if self._last is None or self._last[0] != key:
            self._last = (key, self._pair.probs(contexts, responses))
        return self._last[1]

    def p_unsafe(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[float]:
        """P(unsafe) of each reply, in [0, 1]."""
        probs = self.label_probs(contexts, responses)  # loads, which sets unsafe_index
        return probs[:, self.unsafe_index].tolist()

    def p_prosocial(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[float]:
        """P(the reply notices the problem and gently guides), in [0, 1]."""
        probs = self.label_probs(contexts, responses)
        return probs[:, self.prosocial_index].tolist()

    def probe_metrics(self) -> dict | None:
        """The judge's metrics on the probe set (accuracy, unsafe recall/precision, prosocial
        accuracy, ...), or ``None`` when its folder has none."""
        return self._metrics().get("probe")


@hookimpl
def register_scorers(register):
    register("safety_judge", SafetyJudge)
