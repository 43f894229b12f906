"""losscraft: plugins/data/samples."""
