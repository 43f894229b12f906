"""losscraft: plugins/models."""
