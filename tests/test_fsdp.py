"""FSDP (torch's ``fully_shard``) on 2 gloo processes equals one process on the global batch.

Each rank shards the same float64 tiny Llama (`losscraft.distributed.sharding.shard_model`: one FSDP unit
per decoder layer plus the root, gradients summed over ranks), takes its rows of every
micro-batch and runs two optimizer steps (SGD, lr 0.1; two micro-batches per step) with
`accumulate_gradients`; rank 0 gathers the full weights. The reference is the same two steps in
this process on the unsharded micro-batches.

Tolerance: the weights' change over the two steps agrees to 1e-9 of its largest entry (float64;
1e-6 where a term computes in float32 by design — the n-pair scores and the embedding
similarities). Measured (max |FSDP − one process| / max |change|): NLL 5.3e-16, n-pair 6.9e-10,
embedding n-pair (negatives gathered across ranks) 7.0e-8, NLL + safety loss 5.3e-16,
unlikelihood 3.6e-12, CRINGE 3.6e-16, FlatGD with the finite-difference penalty 5.3e-16 (whose
FSDP path runs as ``.backward()`` passes into ``.grad``,
`losscraft.distributed.sharding.finite_difference_penalty`; leaving the penalty out moves the weights by
1.2e-3, so the check sees it); with the central difference and a relative shift (eps = 1e-4)
5.3e-16. Every step's logged penalty share (and its parts), which FSDP sums over the ranks'
shards, equals one process's to 1e-12 (measured: at most 5e-16 relative; without the sum over
ranks each rank would log the norms of its own shards only).
"""

from __future__ import annotations

import pytest
import torch

from dist_helpers import run_ranks
from losscraft import Term, WeightedObjective, distributed
from losscraft.distributed import engines, sharding
from losscraft.core import accumulate_gradients
from losscraft.core.penalty import GradientNormPenalty
from losscraft.errors import RecipeError
from losscraft_plugins.objectives.cringe import CringeObjective
from losscraft_plugins.objectives.embedding_npair import EmbeddingNPairLoss
from losscraft_plugins.objectives.nll import NLLLoss
from losscraft_plugins.objectives.safety_loss import SafetyLoss
from losscraft_plugins.objectives.socially_aware_npair import SociallyAwareNPairLoss
from losscraft_plugins.objectives.unlikelihood import UnlikelihoodObjective
from test_distributed import EXAMPLES, MICRO, _setup

STEPS = 2
LR = 0.1
REL_TOL = 1e-9
FLOAT32_TOL = 1e-6
OBJECTIVES = ["nll", "npair", "embedding_npair", "safety", "unlikelihood", "cringe",
              "flatgd_finite_difference", "flatgd_central"]
FLOAT32 = {"npair", "embedding_npair"}
#: Sharded, the finite difference runs as `.backward()` passes into `.grad`; in one process it
#: goes through the trainer's single backward — the same difference, summed in another order,
#: and its cancellation (f·∇L(θ') − f·∇L(θ), f = 2‖g‖/r) turns float64 rounding into ~1e-7.
LOOSER = {"flatgd_finite_difference": 1e-6}
#: The penalty's share and its parts (`losscraft.core.penalty_share`), which FSDP sums over the
#: ranks' shards: equal to one process's to SHARE_TOL (see the module docstring).
SHARE_KEYS = ("share", "grad_norm_penalty", "grad_norm_rest", "weighted", "shift", "fd_passes")
SHARE_TOL = 1e-12


def _objective(name: str, method: str = "finite_difference") -> WeightedObjective:
    nll = Term("nll", NLLLoss())
    if name == "nll":
        return WeightedObjective([nll])
    if name == "npair":
        return WeightedObjective([nll, Term("npair", SociallyAwareNPairLoss(margin=0.5), 0.5)])
    if name == "embedding_npair":  # in-batch negatives of the global batch, as one process has
        gather = distributed.active()
        return WeightedObjective([Term("emb", EmbeddingNPairLoss(gather_across_ranks=gather))])
    if name == "safety":
        return WeightedObjective([nll, Term("safety", SafetyLoss(chunk_size=5))])
    if name == "unlikelihood":
        return WeightedObjective([Term("ul", UnlikelihoodObjective(negatives=True))])
    if name == "cringe":  # k = 1: the sampled token is the argmax, the same on every rank
        return WeightedObjective([Term("cringe", CringeObjective(k=1))])
    # flatgd_finite_difference: the forward difference, absolute radius; flatgd_central: the
    # recipes' central difference with a shift relative to ‖θ‖
    settings = {"difference": "central", "eps": 1e-4} if name == "flatgd_central" else {}
    return WeightedObjective([
        Term("lm", NLLLoss()), Term("safety", SafetyLoss(chunk_size=5)),
        Term("safety_grad_penalty", GradientNormPenalty(SafetyLoss(chunk_size=5), method=method,
                                                        **settings), 0.5)])


def _train(name: str, sharded: bool, method: str = "finite_difference"):
    """Two SGD steps; returns (the full weights — on rank 0 —, each step's metrics)."""
    model, experts, collate = _setup()
    if sharded:
        sharding.shard_model(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
    objective = _objective(name, method)
    history = []
    for step in range(STEPS):
        rows = [distributed.shard(m) if sharded else m for m in MICRO]
        batches = [collate([EXAMPLES[(i + 3 * step) % len(EXAMPLES)] for i in r]) for r in rows]
        history.append(accumulate_gradients(
            objective, model, batches, experts=experts, step=step,
            generator=torch.Generator().manual_seed(step),
            need_hidden_states=name == "embedding_npair",
            engine=engines.for_process(sharded=sharded)))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    weights = sharding.full_model_state(model) if sharded else \
        {n: t.detach().clone() for n, t in model.state_dict().items()}
    return weights, history


def _rank_train(rank: int, name: str, out: str) -> None:
    distributed.setup("cpu")
    weights, history = _train(name, sharded=True)
    if rank == 0:
        torch.save({"weights": weights, "metrics": history}, out)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_fsdp_equals_one_process_on_the_global_batch(name, tmp_path):
    run_ranks(_rank_train, name, str(tmp_path / "fsdp.pt"))
    got = torch.load(tmp_path / "fsdp.pt")
    ref, ref_metrics = _train(name, sharded=False)
    start = _setup()[0].state_dict()
    change = max((ref[n] - start[n]).abs().max().item() for n in ref)
    assert change > 0
    worst = max((got["weights"][n] - ref[n]).abs().max().item() for n in ref)
    print(f"{name}: max |fsdp - single| / max |change| = {worst / change:.3g}")
    tol = LOOSER.get(name, FLOAT32_TOL if name in FLOAT32 else REL_TOL)
    assert worst <= tol * change, worst / change
    for got_step, ref_step in zip(got["metrics"], ref_metrics):
        for key in ("loss", "safety_grad_penalty/grad_norm", "safety_grad_penalty/penalty",
                    "safety_grad_penalty/term"):
            if key in ref_step:
                assert got_step[key] == pytest.approx(ref_step[key], rel=1e-6), key
        if name.startswith("flatgd"):  # the share, from each rank's shards, on every step
            for key in SHARE_KEYS:
                key = f"safety_grad_penalty/{key}"
                assert got_step[key] == pytest.approx(ref_step[key], rel=SHARE_TOL), key
    if name.startswith("flatgd"):  # the penalty's gradient is far above the tolerance
        plain, _ = _train("safety", sharded=False)
        without = max((got["weights"][n] - plain[n]).abs().max().item() for n in ref)
        print(f"{name}: without the penalty the weights differ by {without / change:.3g}")
        assert without > 1e4 * REL_TOL * change


def _rank_exact(rank: int, out: str) -> None:
    distributed.setup("cpu")
    with pytest.raises(RecipeError, match='penalty.method = "finite_difference"'):
        _train("flatgd_exact", sharded=True, method="exact")
    if rank == 0:
        open(out, "w").write("refused")


def test_exact_penalty_is_refused_under_fsdp(tmp_path):
    run_ranks(_rank_exact, str(tmp_path / "exact"))
    assert (tmp_path / "exact").read_text() == "refused"


def test_fsdp_needs_several_processes():
    with pytest.raises(Exception, match="several processes"):
        sharding.shard_model(torch.nn.Linear(2, 2))
