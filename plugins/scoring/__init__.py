"""losscraft: plugins/scoring."""
