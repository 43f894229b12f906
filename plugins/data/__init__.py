"""losscraft: plugins/data."""
