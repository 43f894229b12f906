"""Stage preparation: what a stage trains on, built before its first step — the stage's data
and collator, negatives mined with the model in the loop, self-replay, rules-of-thumb
augmentation, and the cache that keeps prepared rows across resumes."""
