"""The safety judge: a (context, reply) classifier giving P(unsafe) and P(prosocial), trained once
from the shipped data (`default_judge_dir`) and measured on a probe set written apart from its
training data (`load_probe`, `probe_metrics`)."""

from losscraft.judge.default import default_judge_dir, judge_recipe_path
from losscraft.judge.probe import ProbePair, load_probe, probe_metrics, probe_path

__all__ = ["ProbePair", "default_judge_dir", "judge_recipe_path", "load_probe", "probe_metrics",
           "probe_path"]
