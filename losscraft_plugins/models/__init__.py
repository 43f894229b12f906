"""losscraft: losscraft_plugins/models."""
