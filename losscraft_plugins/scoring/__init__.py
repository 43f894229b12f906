"""losscraft: losscraft_plugins/scoring."""
