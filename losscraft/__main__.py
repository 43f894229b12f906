"""``python -m losscraft``: the command line, also for launchers that start a module
(``torchrun --nproc-per-node N -m losscraft run RECIPE``, ``accelerate launch -m losscraft ...``)."""

from losscraft.app.main import main

if __name__ == "__main__":
    main()
