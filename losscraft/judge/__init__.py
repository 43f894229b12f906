"""The safety judges: (context, reply) classifiers giving P(unsafe) and P(prosocial), shipped as
small adapters and made ready in the cache on first use (`judge_dir`), and measured on a probe set
written apart from their training data (`load_probe`, `probe_metrics`) beside the surface floor
(`losscraft.judge.surface`). A recipe with a ``[classifier]`` table trains one
(`train_classifier`), or any other safe/unsafe (context, response) classifier."""

from losscraft.judge.default import default_judge_dir, judge_dir, judge_recipe_path
from losscraft.judge.probe import ProbePair, load_probe, probe_metrics, probe_path

__all__ = ["ProbePair", "default_judge_dir", "judge_dir", "judge_recipe_path", "load_probe",
           "probe_metrics", "probe_path", "train_classifier", "ClassifierResult"]


def __getattr__(name: str):
    # training pulls in transformers and the trainer; loading a judge must stay cheap
    if name in ("train_classifier", "ClassifierResult"):
        from losscraft.judge import train
        return getattr(train, name)
    raise AttributeError(f"module 'losscraft.judge' has no attribute '{name}'")
