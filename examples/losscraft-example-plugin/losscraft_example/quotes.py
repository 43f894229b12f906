"""``quotes``: dialog examples from a text file of ``context<TAB>reply`` lines."""

from pathlib import Path

from losscraft import Example, hookimpl
from losscraft.errors import DataError, RecipeError


class QuotesSource:
    """One example per ``context<TAB>reply`` line (blank lines and ``#`` comments skipped).

    Args:
        path: the file.
        turn_separator: splits the context into turns (oldest first).
    """

    def __init__(self, path: str, turn_separator: str = " || "):
        if not Path(path).is_file():
            raise RecipeError(f"no such file: {path}", key="path")
        if not turn_separator:
            raise RecipeError("must not be empty", key="turn_separator")
        self.path, self.turn_separator = path, turn_separator

    def __iter__(self):
        with open(self.path, encoding="utf-8") as f:
            for row, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line.strip() or line.startswith("#"):
                    continue
                context, sep, reply = line.partition("\t")
                if not sep or not reply.strip():
                    raise DataError("expected context<TAB>reply", file=self.path, row=row)
                yield Example(history=context.split(self.turn_separator), response=reply,
                              source="quotes", id=f"quotes:{row}")


@hookimpl
def register_data_sources(register):
    register("quotes", QuotesSource)
