"""losscraft: losscraft/data."""
