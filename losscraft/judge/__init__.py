"""The safety judges: (context, reply) classifiers giving P(unsafe) and P(prosocial), shipped as
small adapters and made ready in the cache on first use (`judge_dir`), and measured on a probe set
written apart from their training data (`load_probe`, `probe_metrics`) beside the surface floor
(`losscraft.judge.surface`)."""

from losscraft.judge.default import default_judge_dir, judge_dir, judge_recipe_path
from losscraft.judge.probe import ProbePair, load_probe, probe_metrics, probe_path

__all__ = ["ProbePair", "default_judge_dir", "judge_dir", "judge_recipe_path", "load_probe",
           "probe_metrics", "probe_path"]
