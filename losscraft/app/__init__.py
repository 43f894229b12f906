"""The application wing: the ``losscraft`` command line and everything only it needs — the run
summary, report rendering, the plugin scaffold, experiment drivers. It sits on top of the library
(`losscraft.core`, `losscraft.recipe`, `losscraft.trainer`, ...), which never imports it."""
