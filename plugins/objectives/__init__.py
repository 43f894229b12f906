"""losscraft: plugins/objectives."""
