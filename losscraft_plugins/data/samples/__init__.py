"""losscraft: losscraft_plugins/data/samples."""
