pytest_plugins = ["losscraft.testing.fixtures"]
