"""A (context, reply) classifier on frozen sentence embeddings: ``[u, v, u·v, |u−v|] → linear``.

``u`` embeds the context (its last ``context_turns`` turns joined by spaces), ``v`` the reply,
both with the sentence encoder (all-MiniLM-L6-v2 by default, L2-normalised mean pooling); the
classic pair features of InferSent / SBERT's classification objective go through one linear
layer. Only the head is trained, so training costs one encoder forward per distinct text plus
seconds of head fitting, and the head cannot memorise the training data's wording the way a
fine-tuned cross-encoder can — on the project's probe set (written apart from the training data)
it generalised better than fine-tuning MiniLM on the same pairs, at a fraction of the CPU time.

Saved as ``pair_head.json`` (labels, encoder, context turns, feature layout) and
``pair_head.safetensors`` (the head) in one folder; `EmbeddingPairClassifier.load` reads it back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from losscraft.plugins.protocols import Context
from losscraft.errors import ModelError
from losscraft.types import Example

CONFIG = "pair_head.json"
WEIGHTS = "pair_head.safetensors"
FEATURES = "u,v,u*v,|u-v|"


def is_pair_head_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds an `EmbeddingPairClassifier`."""
    return (Path(folder) / CONFIG).is_file()


def load_sentence_encoder(encoder: str, device: str = "cpu"):
    """The sentence encoder: ``"minilm_embedded"`` (the bundled all-MiniLM-L6-v2) or a local
    sentence-transformers folder."""
    from losscraft.judge.encoder import embedded_minilm_path
    from losscraft.recipe.schema import EMBEDDED_MINILM
    from sentence_transformers import SentenceTransformer

    path = embedded_minilm_path() if encoder == EMBEDDED_MINILM else Path(encoder)
    if not Path(path).is_dir():
        raise ModelError(f"sentence encoder {encoder!r}: {path} is not a folder")
    return SentenceTransformer(str(path), device=device)


def context_string(context: Context, turns: int) -> str:
    """The last ``turns`` turns of a context, joined by spaces."""
    items = [context] if isinstance(context, str) else list(context)
    return " ".join(t.strip() for t in items[-turns:])


class EmbeddingPairClassifier:
    """Frozen sentence encoder + linear head over pair features (see the module doc).

    Args:
        head: ``Linear(4·dim, num_labels)``.
        labels: label names, index order.
        encoder: what `load_sentence_encoder` loads.
        context_turns: context turns embedded.
        embedder: an already-loaded sentence encoder to share (loaded lazily otherwise).
    """

    def __init__(self, head: torch.nn.Linear, labels: Sequence[str], *, encoder: str,
                 context_turns: int, embedder=None, device: str = "cpu"):
        self.head, self.labels = head.eval(), list(labels)
        self.encoder, self.context_turns, self.device = encoder, context_turns, device
        self._embedder = embedder

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = load_sentence_encoder(self.encoder, self.device)
        return self._embedder

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """L2-normalised embeddings ``(N, dim)`` of distinct texts, each encoded once."""
        unique = list(dict.fromkeys(texts))
        if not unique:
            return torch.zeros(0, self.head.in_features // 4)
        vectors = self.embedder.encode(unique, batch_size=batch_size, convert_to_tensor=True,
                                       show_progress_bar=False)
        table = F.normalize(torch.as_tensor(vectors).float().cpu(), dim=-1)
        index = {t: i for i, t in enumerate(unique)}
        return table[[index[t] for t in texts]]

    def features(self, contexts: Sequence[Context], responses: Sequence[str]) -> torch.Tensor:
        """``(N, 4·dim)`` pair features."""
        texts = [context_string(c, self.context_turns) for c in contexts] + list(responses)
        vectors = self.embed(texts)
        u, v = vectors[: len(contexts)], vectors[len(contexts):]
        return torch.cat([u, v, u * v, (u - v).abs()], dim=-1)

    @torch.no_grad()
    def probs(self, contexts: Sequence[Context], responses: Sequence[str]) -> torch.Tensor:
        """``(N, num_labels)`` label probabilities."""
        return self.head(self.features(contexts, responses)).softmax(-1)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()},
                  folder / WEIGHTS)
        (folder / CONFIG).write_text(json.dumps(
            {"labels": self.labels, "encoder": self.encoder, "context_turns": self.context_turns,
             "features": FEATURES, "dim": self.head.in_features // 4}, indent=2))

    @classmethod
    def load(cls, folder: str | Path, *, embedder=None, device: str = "cpu"
             ) -> EmbeddingPairClassifier:
        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG).read_text())
            state = load_file(folder / WEIGHTS)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{folder} is not a readable pair-head classifier: {exc}") from None
        if config.get("features") != FEATURES:
            raise ModelError(f"{folder / CONFIG}: unknown feature layout "
                             f"{config.get('features')!r}, expected {FEATURES!r}")
        head = torch.nn.Linear(4 * config["dim"], len(config["labels"]))
        head.load_state_dict(state)
        return cls(head, config["labels"], encoder=config["encoder"],
                   context_turns=config["context_turns"], embedder=embedder, device=device)


def fit_pair_head(examples: list[Example], labels: Sequence[str], *, encoder: str,
                  context_turns: int, allowed: torch.Tensor, sample_weights: torch.Tensor | None,
                  epochs: float, batch_size: int, lr: float, weight_decay: float, seed: int,
                  on_step: Callable[[int, float, float], None], total_steps: int,
                  loss_fn: Callable) -> tuple[EmbeddingPairClassifier, list[float]]:
    """Embed every pair once, then train the linear head for ``total_steps`` AdamW steps over
    seeded reshuffles (``allowed``: ``(N, C)`` admissible labels, see
    `losscraft.judge.fit.partial_label_loss`)."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(1, 1)  # replaced once the dimension is known
    model = EmbeddingPairClassifier(head, labels, encoder=encoder, context_turns=context_turns)
    x = model.features([ex.history for ex in examples], [ex.response for ex in examples])
    model.head = head = torch.nn.Linear(x.shape[1], len(labels))
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    head.train()
    while len(losses) < total_steps:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(order), batch_size):
            if len(losses) >= total_steps:
                break
            began = time.perf_counter()
            idx = order[start:start + batch_size]
            weights = sample_weights[idx] if sample_weights is not None else None
            loss = loss_fn(head(x[idx]), allowed[idx], weights)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            on_step(len(losses), losses[-1], len(idx) / max(time.perf_counter() - began, 1e-9))
    head.eval()
    return model, losses
