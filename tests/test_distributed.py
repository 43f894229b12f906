"""Data parallelism is exact: 2 gloo processes, each with half of every micro-batch, give the
gradient and the logged metrics of one process on the whole (global) batch.

Each rank wraps the same float64 tiny Llama in ``DistributedDataParallel``
(`losscraft.distributed.wrap_model`), takes its shard of every micro-batch
(`losscraft.distributed.shard`) and runs `accumulate_gradients`; the reference is the same call
in this process on the unsharded micro-batches. What makes it exact: ``step_sum`` normalisers
all-reduced (each rank's loss is its share of the global loss), gradients summed over ranks
(not averaged), the gradient penalty's ``g`` all-reduced before its norm, direction and vjp.

Tolerance: relative 1e-9 of the largest gradient entry (float64). Measured: 3e-16 (NLL), 1.4e-14
(FlatGD, exact penalty), 3e-16 (FlatGD, finite difference), 3.3e-10 (n-pair, whose sequence
scores are float32 by design and whose shards pad to other lengths), 7e-8 (embedding n-pair with
``gather_across_ranks``: float32 similarities, tolerance 1e-6). Without the all-reduce of
``g`` the penalty's gradient is off by 5.8e-4 of the largest entry here (penalty weight 0.5 beside
the NLL and safety terms; checked below).
"""

from __future__ import annotations

import json

import pytest
import torch

from dist_helpers import run_ranks
from losscraft import Term, WeightedObjective, distributed
from losscraft.core import accumulate_gradients
from losscraft.core.penalty import GradientNormPenalty
from losscraft.distributed import engines
from losscraft.data.collate import DialogCollator
from losscraft.errors import LosscraftError, RecipeError
from losscraft.types import Example
from losscraft_plugins.models.tiny import TinyModel
from losscraft_plugins.objectives.embedding_npair import EmbeddingNPairLoss
from losscraft_plugins.objectives.nll import NLLLoss
from losscraft_plugins.objectives.safety_loss import SafetyLoss
from losscraft_plugins.objectives.socially_aware_npair import SociallyAwareNPairLoss

TURNS = ["hi, how are you?", "can you help me with my homework?", "you are dumb",
         "i want to skip school tomorrow", "my friend lied to me", "what should i cook?",
         "tell me a secret", "I hate my neighbour"]
REPLIES = ["I'm well, thanks!", "Sure, which subject?", "You are dumber, idiot.",
           "Maybe talk to someone about why.", "That hurts. Talk to them calmly.",
           "How about pasta?", "I can't share that.", "Then burn his house down."]
EXAMPLES = [Example(history=[t], response=r, is_safe=i not in (2, 7),
                    negatives=["whatever.", "go away, loser"][: 1 + i % 2] if i % 4 else [])
            for i, (t, r) in enumerate(zip(TURNS, REPLIES))]
#: Two micro-batches of 4 rows (one optimizer step); rank r takes rows r, r+2 of each.
MICRO = [list(range(0, 4)), list(range(4, 8))]
REL_TOL = 1e-9
#: The embedding n-pair loss computes its similarities in float32 by design.
FLOAT32_TOL = 1e-6
#: Logged metrics: sequence scores are float32 by design (`token_logprobs`), so sums over
#: differently padded shards agree to float32 precision.
METRIC_TOL = 1e-6
#: Metrics averaged over micro-batches (a mean of per-micro-batch means): they depend on how
#: rows are grouped — by ``grad_accum`` in one process as by the shards here — so not compared.
PER_MICRO_BATCH_MEANS = {"pos_score", "neg_score", "accuracy", "pos_cosine", "neg_cosine"}

OBJECTIVES = ["nll", "npair", "flatgd_exact", "flatgd_finite_difference",
              "embedding_npair_gathered"]


def _objective(name: str) -> WeightedObjective:
    if name == "nll":
        return WeightedObjective([Term("nll", NLLLoss())])
    if name == "npair":
        return WeightedObjective([Term("nll", NLLLoss()),
                                  Term("npair", SociallyAwareNPairLoss(margin=0.5), 0.5)])
    if name.startswith("embedding_npair"):
        gather = name.endswith("_gathered")
        return WeightedObjective([Term("emb", EmbeddingNPairLoss(gather_across_ranks=gather))])
    method = name.removeprefix("flatgd_")
    # exact: the torch.func route, which a DDP run always takes, in the single process too — the
    # comparison is of one algorithm spread over ranks; the exact modes are compared with each
    # other in tests/test_fused_heads.py (1e-6: float32 inside the tiny Llama).
    penalty = GradientNormPenalty(SafetyLoss(chunk_size=5), method=method,
                                  exact_mode="torch.func")
    return WeightedObjective([
        Term("lm", NLLLoss()), Term("safety", SafetyLoss(chunk_size=5)),
        Term("safety_grad_penalty", penalty, 0.5)])


def _setup():
    load = lambda seed: TinyModel(seed=seed).load(dtype=torch.float64)  # noqa: E731
    policy = load(1)
    experts = {name: load(seed).model.requires_grad_(False).eval()
               for name, seed in (("clean", 2), ("toxic", 3))}
    collator = DialogCollator(policy.tokenizer, max_context_tokens=32, max_response_tokens=16,
                              pack_negatives=True, max_negatives=2)
    return policy.model, experts, collator


def _step(name: str, sharded: bool):
    model, experts, collate = _setup()
    forward_model = distributed.wrap_model(model, "cpu") if sharded else None
    rows = [distributed.shard(m) if sharded else m for m in MICRO]
    batches = [collate([EXAMPLES[i] for i in r]) for r in rows]
    metrics = accumulate_gradients(_objective(name), model, batches, experts=experts,
                                   forward_model=forward_model, engine=engines.for_process(),
                                   need_hidden_states=name.startswith("embedding"))
    # an unused parameter: None in one process, zeros under DDP (which needs every gradient)
    return metrics, {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                     for n, p in model.named_parameters()}


def _rank_step(rank: int, name: str, out: str) -> None:
    place, _ = distributed.setup("cpu")
    assert place.world_size == 2 and place.rank == rank
    metrics, grads = _step(name, sharded=True)
    torch.save({"metrics": metrics, "grads": grads}, f"{out}.{rank}")


@pytest.mark.parametrize("name", OBJECTIVES)
def test_two_processes_equal_one_on_the_global_batch(name, tmp_path):
    run_ranks(_rank_step, name, str(tmp_path / "step"))
    ref_metrics, ref = _step(name, sharded=False)
    scale = max(g.abs().max().item() for g in ref.values())
    assert scale > 0
    for rank in (0, 1):  # DDP leaves the same (global) gradient on every rank
        got = torch.load(tmp_path / f"step.{rank}")
        worst = max((got["grads"][n] - ref[n]).abs().max().item() for n in ref)
        tolerance = FLOAT32_TOL if name.startswith("embedding") else REL_TOL
        assert worst <= tolerance * scale, (rank, worst / scale)
        assert got["metrics"].keys() == ref_metrics.keys()
        for key, value in ref_metrics.items():  # combined over ranks: the global step's
            if key.rsplit("/", 1)[-1] in PER_MICRO_BATCH_MEANS:
                continue
            assert got["metrics"][key] == pytest.approx(value, rel=METRIC_TOL, abs=1e-12), key


def test_in_batch_negatives_of_one_shard_differ_from_the_global_batch(tmp_path):
    """Without ``gather_across_ranks`` each rank contrasts its rows with its own shard only."""
    run_ranks(_rank_step, "embedding_npair", str(tmp_path / "local"))
    _, ref = _step("embedding_npair", sharded=False)
    got = torch.load(tmp_path / "local.0")["grads"]
    scale = max(g.abs().max().item() for g in ref.values())
    assert max((got[n] - ref[n]).abs().max().item() for n in ref) > 100 * FLOAT32_TOL * scale


def _rank_penalty_without_reduce(rank: int, out: str) -> None:
    """The finite-difference penalty with each rank's own g (the bug the all-reduce fixes)."""
    distributed.setup("cpu")
    original = distributed.all_reduce_tensors
    distributed.all_reduce_tensors = lambda tensors: dict(tensors)
    try:
        _, grads = _step("flatgd_finite_difference", sharded=True)
    finally:
        distributed.all_reduce_tensors = original
    torch.save(grads, f"{out}.{rank}")


def test_the_penalty_needs_the_global_gradient(tmp_path):
    run_ranks(_rank_penalty_without_reduce, str(tmp_path / "local"))
    _, ref = _step("flatgd_finite_difference", sharded=False)
    got = torch.load(tmp_path / "local.0")
    scale = max(g.abs().max().item() for g in ref.values())
    worst = max((got[n] - ref[n]).abs().max().item() for n in ref)
    assert worst > 1e4 * REL_TOL * scale  # measured 5.8e-4: far outside REL_TOL


# ----------------------------------------------------------------------------- helpers
def _rank_helpers(rank: int, out: str) -> None:
    distributed.setup("cpu")
    assert distributed.shard(list(range(5))) == [[0, 2, 4], [1, 3]][rank]
    assert distributed.all_reduce_sum(rank + 1) == 3.0
    assert distributed.any_rank(rank == 1) and not distributed.any_rank(False)
    summed = distributed.all_reduce_tensors({"a": torch.full((2, 2), float(rank + 1))})
    assert torch.equal(summed["a"], torch.full((2, 2), 3.0))
    combined = distributed.combine_metrics({"s": 1.0, "m": 2.0 * (rank + 1)},
                                           {"s": 1, "m": 2}, {"s"})
    assert combined == {"s": 2.0, "m": 1.5}  # summed; mean over 4 micro-batch values
    calls = []
    assert distributed.run_on_main(lambda: calls.append(rank) or "from 0") == "from 0"
    assert calls == ([0] if rank == 0 else [])

    def fail():
        raise RecipeError("bad thing", key="stages.main.mining")
    with pytest.raises(LosscraftError, match="stages.main.mining.*bad thing") as raised:
        distributed.run_on_main(fail)
    # rank 0 reports its own error; the others stop quietly with the same message
    assert type(raised.value) is (RecipeError if rank == 0 else distributed.RankZeroError)
    with pytest.raises(LosscraftError, match="only 1 rows"):
        distributed.check_shardable(5, 4, key="stages.main.batch_size")
    distributed.check_shardable(6, 4, key="stages.main.batch_size")
    (open(f"{out}.{rank}", "w")).write(json.dumps({"ok": True}))


def test_collective_helpers(tmp_path):
    run_ranks(_rank_helpers, str(tmp_path / "helpers"))
    assert all((tmp_path / f"helpers.{r}").is_file() for r in (0, 1))


def test_single_process_is_a_no_op():
    assert not distributed.active()
    assert distributed.launched().world_size == 1
    assert distributed.shard([3, 1, 2]) == [3, 1, 2]
    assert distributed.all_reduce_sum(2.5) == 2.5
    assert distributed.run_on_main(lambda: 7) == 7
    assert distributed.wrap_model(torch.nn.Linear(2, 2), "cpu") is None
    distributed.check_shardable(1, 8, key="k")  # one process takes any batch


@pytest.mark.parametrize("variable", ["ACCELERATE_USE_DEEPSPEED"])  # FSDP: test_fsdp*.py
def test_sharding_engines_are_refused_by_name(variable, monkeypatch):
    monkeypatch.setenv(variable, "true")
    with pytest.raises(LosscraftError, match="torch's FSDP only.*--multi_gpu"):
        distributed.setup("cpu")
