"""A stage's cache of sampled rows: damaged files are resampled, symlinks are never written
through."""

import pytest

from losscraft.errors import RunFolderError
from losscraft.trainer.prepare.stage_cache import read_cached_rows, write_cached_rows


def test_rows_round_trip_under_their_key(tmp_path):
    path = tmp_path / "stages" / "mined.jsonl"
    write_cached_rows(path, "k1", [{"a": 1}, {"a": 2}])
    assert read_cached_rows(path, "k1", 2) == [{"a": 1}, {"a": 2}]
    assert read_cached_rows(path, "k2", 2) is None
    assert read_cached_rows(path, "k1", 3) is None


@pytest.mark.parametrize("text", ['{"settings": "k1"}\n{"a": \n', "[1]\n", "\xff{", "[" * 100_000])
def test_a_damaged_cache_is_sampled_again(tmp_path, text):
    path = tmp_path / "mined.jsonl"
    path.write_text(text, encoding="utf-8")
    assert read_cached_rows(path, "k1", 1) is None


def test_a_symlink_at_the_cache_path_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    path = tmp_path / "run" / "mined.jsonl"
    path.parent.mkdir()
    path.symlink_to(target)
    with pytest.raises(RunFolderError):
        write_cached_rows(path, "k1", [{"a": 1}])
    assert target.read_text() == "keep me"
