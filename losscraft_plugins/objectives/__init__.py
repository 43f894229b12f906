"""losscraft: losscraft_plugins/objectives."""
