"""losscraft's built-in plugins. Each module registers its components through the ``losscraft``
entry-point group exactly as a third-party package would (see pyproject.toml)."""
