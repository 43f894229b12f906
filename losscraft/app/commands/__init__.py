"""The built-in commands, registered through the same ``register_commands`` hook a plugin uses
(`losscraft.app.command_hooks` calls the built-ins first). One module per command family:

- `run` — ``validate``, ``run``, ``run-all``;
- `eval` — ``eval``, ``compare``;  `generate` — ``generate``;
- `judge` — ``score``, ``judge``;  `bench` — ``bench``;
- `plugins` — ``plugins``;  `new_plugin` — ``new-plugin``;  `install` — ``install``.

Each module imports what its commands need inside them, so that starting the command line (and
``--help``) imports no torch.
"""

from __future__ import annotations

from losscraft.plugins.hookspecs import hookimpl


@hookimpl
def register_commands(cli):
    from losscraft.app.commands import (bench, eval, generate, install, judge, new_plugin,
                                        plugins, run)

    for command in (run.validate_command, run.run_command, run.run_all, eval.eval_command,
                    eval.compare_command, generate.generate_command, judge.score_command,
                    judge.judge_command, bench.bench_command, plugins.plugins_command,
                    new_plugin.new_plugin_command, install.install_command):
        cli.add_command(command)
