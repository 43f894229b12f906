"""Reading TOML tables into typed settings, shared by every kind of recipe (`losscraft.recipe.parse`
has the dialog-training and the classifier dialects): each error is a `RecipeError` naming the
file and the key path, unknown keys come with a did-you-mean.

Problems are collected, not raised one at a time: `RecipeLocation.collect` records the error of
one part of a recipe (a key of a settings table, a term, a stage's values) and parsing goes on
with the rest, so ``losscraft validate`` reports every structural problem together with the
plugin problems of the parts that did parse (`RecipeLocation.raise_problems` raises them all)."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from losscraft.errors import RecipeError, RecipeErrors, did_you_mean
from losscraft.recipe.overrides import apply_assignments, apply_overrides


@dataclasses.dataclass
class _Outcome:
    ok: bool = True


class ErrorCollector:
    """Collects `RecipeError`s from several parts of a recipe (``with collector.catch(): ...``;
    the outcome's ``ok`` turns false on an error) and raises them together (`raise_if_any`).
    ``raise_now``: re-raise at once instead."""

    def __init__(self, *, raise_now: bool = False):
        self.errors: list[RecipeError] = []
        self.raise_now = raise_now

    @contextmanager
    def catch(self) -> Iterator[_Outcome]:
        outcome = _Outcome()
        try:
            yield outcome
        except RecipeError as exc:  # RecipeErrors too: its problems are kept one by one
            outcome.ok = False
            if self.raise_now:
                raise
            self.errors.extend(exc.errors if isinstance(exc, RecipeErrors) else [exc])

    def raise_if_any(self) -> None:
        """Raise the errors collected: one as itself, several as `RecipeErrors`."""
        raise_all(self.errors)


class RecipeLocation:
    """The recipe file being parsed; builds `RecipeError`s that name it and a key path, and
    collects the problems found so far (`problems`)."""

    def __init__(self, file: str):
        self.file = file
        self._collector = ErrorCollector()
        self.problems: list[RecipeError] = self._collector.errors

    def error(self, key: str, message: str) -> RecipeError:
        return RecipeError(message, file=self.file, key=key)

    def collect(self) -> AbstractContextManager[_Outcome]:
        """Record a `RecipeError` raised inside (``outcome.ok`` turns false) and go on."""
        return self._collector.catch()

    def raise_problems(self) -> None:
        """Raise the problems collected: one as itself, several as `RecipeErrors`."""
        self._collector.raise_if_any()


def raise_all(problems: list[RecipeError]) -> None:
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise RecipeErrors(problems)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "none")


def check_value(value: Any, tp: Any, key: str, where: RecipeLocation) -> Any:
    """``value`` checked against the annotation ``tp`` (ints widen to float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return check_value(value, args[0], key, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise where.error(key, f"expected a list of {_type_name(item)}, got {value!r}")
        return [check_value(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict or tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise where.error(key, f"expected a finite number, got {value}")
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            got = f"{type(value).__name__} {value!r}"
            raise where.error(key, f"expected {_type_name(tp)}, got {got}")
        return value
    return value


def unknown_key_error(key: str, name: str, allowed: list[str],
                      where: RecipeLocation) -> RecipeError:
    """``name`` is not a key of table ``key`` (``""``: the top level)."""
    return where.error(f"{key}.{name}" if key else name,
                       f"unknown key '{name}' in [{key or 'recipe'}]{did_you_mean(name, allowed)} "
                       f"(allowed: {', '.join(allowed)})")


def as_table(raw: Any, key: str, where: RecipeLocation) -> dict:
    """``raw`` if it is a TOML table, else an error at ``key``."""
    if not isinstance(raw, dict):
        raise where.error(key, f"expected a table, got {type(raw).__name__} {raw!r}")
    return raw


def settings_table(cls: type, raw: Any, key: str, where: RecipeLocation) -> Any:
    """A plain settings table → dataclass ``cls`` (no plugin parameters allowed)."""
    raw = as_table(raw, key, where)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ("key", "params")]
    values = {}
    for name, value in raw.items():  # each bad key is a problem; the others still count
        with where.collect():
            if name not in names:
                raise unknown_key_error(key, name, names, where)
            values[name] = check_value(value, hints[name], f"{key}.{name}", where)
    return cls(**values)


def component_parts(raw: Any, key: str, where: RecipeLocation,
               core: tuple[str, ...] = ("plugin",)) -> dict:
    """Split a component table into core keys and plugin params."""
    raw = as_table(raw, key, where)
    plugin = raw.get("plugin")
    if not isinstance(plugin, str) or not plugin:
        raise where.error(f"{key}.plugin", "missing 'plugin = \"<name>\"' (which plugin to use)")
    return {"core": {k: v for k, v in raw.items() if k in core},
            "params": {k: v for k, v in raw.items() if k not in core}}


def core_fields(cls: type, core: dict, key: str, where: RecipeLocation) -> dict:
    """The core (non-parameter) keys of a component table, checked against ``cls``."""
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in core.items():  # a bad key is a problem; the component keeps its default
        with where.collect():
            values[name] = check_value(value, hints[name], f"{key}.{name}", where)
    return values


def list_of_tables(raw: Any, key: str, where: RecipeLocation) -> list[dict]:
    """An array of tables (``[[key]]``), at least one."""
    if not isinstance(raw, list) or not raw:
        raise where.error(key, f"expected one or more [[{key}]] tables")
    return raw


def check_range(where: RecipeLocation, key: str, value: float, *, low: float | None = None,
                high: float | None = None, low_open: bool = False, high_open: bool = False,
                what: str = "a number") -> None:
    """`RecipeError` at ``key`` unless ``low (<|<=) value (<|<=) high``."""
    bad = ((low is not None and (value <= low if low_open else value < low)) or
           (high is not None and (value >= high if high_open else value > high)))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise where.error(key, f"expected {what} {' and '.join(p for p in (lo, hi) if p)}, "
                               f"got {value}")


def recipe_header(raw: dict, path: str, top_level: tuple[str, ...], required: str, hint: str,
                  run_cls: type) -> tuple[RecipeLocation, Any]:
    """What every kind of recipe starts with: only ``top_level`` keys, the ``required`` table
    present (``hint`` shows an example), and ``[run]`` as ``run_cls`` with the name defaulting to
    the file's stem and the output folder to ``runs/<name>``."""
    where = RecipeLocation(path)
    for name in raw:
        if name not in top_level:
            where.problems.append(unknown_key_error("", name, list(top_level), where))
    if required not in raw:
        raise where.error(required, f"missing [{required}] table (e.g. {hint})")
    run = run_cls()
    with where.collect():
        run = settings_table(run_cls, raw.get("run", {}), "run", where)
    run.name = run.name or Path(path).stem
    run.output_dir = run.output_dir or str(Path("runs") / run.name)
    return where, run


def read_recipe_mapping(path: str | Path, overrides: list[str] | None = None) -> dict:
    """A recipe file as a mapping: TOML read, ``--set`` overrides applied, then the profile
    ``run.profile`` selects (``[profiles.<name>]``), then the overrides again so that the command
    line wins. Shared by every kind of recipe."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError("recipe file not found", file=str(path))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RecipeError(f"not UTF-8 text (byte {exc.start}: {exc.reason}); save the recipe "
                          "as UTF-8", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"not valid TOML: {exc}", file=str(path)) from None
    except RecursionError:
        raise RecipeError("not valid TOML: nested too deeply", file=str(path)) from None
    except OSError as exc:
        raise RecipeError(f"cannot read the recipe ({exc.strerror})", file=str(path)) from None
    raw = apply_overrides(raw, overrides or [], file=str(path))
    profile = raw.get("run", {}).get("profile") if isinstance(raw.get("run"), dict) else None
    if profile:
        profiles = raw.get("profiles", {})
        if not isinstance(profiles, dict) or profile not in profiles:
            raise RecipeError(f"no [profiles.{profile}] table (profiles: "
                              f"{', '.join(profiles) if isinstance(profiles, dict) else 'none'})",
                              file=str(path), key="run.profile")
        raw = apply_assignments(raw, profiles[profile], file=str(path), where=f"profiles.{profile}")
        raw = apply_overrides(raw, overrides or [], file=str(path))
    return raw
