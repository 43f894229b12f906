"""`losscraft.runtime.malloc`: the allocator settings behind faster CPU steps and exact CPU peaks."""

import sys

import pytest
import torch

from losscraft.runtime import malloc as heap
from losscraft.bench.measure import cpu_peak_supported, rss_peak_of

linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or heap._mallopt() is None,
                                 reason="glibc mallopt only")


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(heap, "_applied", None)
    yield
    heap._applied = None  # the next caller decides again


def test_switched_off_by_the_environment(monkeypatch, fresh):
    monkeypatch.setenv("LOSSCRAFT_KEEP_FREED_MEMORY", "0")
    assert heap.keep_freed_memory() is False
    assert heap.keep_freed_memory(default=True) is False


@linux_glibc
def test_opt_in_default_and_environment(monkeypatch, fresh):
    monkeypatch.delenv("LOSSCRAFT_KEEP_FREED_MEMORY", raising=False)
    assert heap.keep_freed_memory(default=False) is False  # a caller that only opts in
    monkeypatch.setenv("LOSSCRAFT_KEEP_FREED_MEMORY", "1")
    assert heap.keep_freed_memory(default=False) is True
    assert heap.keep_freed_memory(default=False) is True  # applied once, stays




@linux_glibc
@pytest.mark.skipif(not cpu_peak_supported(), reason="needs /proc/self/clear_refs")
def test_peak_of_a_step_is_its_live_tensors_not_heap_holes():
    """Frees of 1–24 MiB blocks move glibc's dynamic threshold so that later blocks land on the
    heap; measured inside `rss_follows_tensors`, a 96 MiB step still peaks at ≈ 96 MiB."""
    for size in (1, 4, 24):  # leave holes of several sizes behind
        torch.empty(size << 18, dtype=torch.float32).fill_(1)

    def step():
        parts = [torch.ones(6 << 18) for _ in range(16)]  # 16 × 6 MiB live at once
        del parts

    peak = rss_peak_of(step) / 2**20
    assert 90 <= peak <= 110, peak
