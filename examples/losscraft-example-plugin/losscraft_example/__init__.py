"""An example third-party losscraft plugin package (see README.md)."""
