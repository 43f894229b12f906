"""losscraft: losscraft_plugins/data."""
