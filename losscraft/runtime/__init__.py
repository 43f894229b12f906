"""The process's environment: which device to use, malloc tuning, whether the hub is reachable,
the cache folder."""
