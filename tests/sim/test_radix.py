"""The prefix cache: radix-tree matching, edge splits, token capacity and LRU eviction."""

from __future__ import annotations

import pytest

from servestack.sim.radix import RadixCache


def test_match_counts_the_longest_cached_prefix() -> None:
    cache = RadixCache(100)
    cache.insert([1, 2, 3, 4, 5])
    assert cache.match([1, 2, 3, 4, 5, 6]) == 5
    assert cache.match([1, 2, 9]) == 2
    assert cache.match([1, 2, 3]) == 3
    assert cache.match([7, 1, 2]) == 0
    assert cache.match([]) == 0


def test_diverging_inserts_split_edges_and_share_the_prefix() -> None:
    cache = RadixCache(100)
    cache.insert([1, 2, 3, 4])
    cache.insert([1, 2, 7, 8, 9])
    assert cache.size == 4 + 3  # [1,2] is stored once
    assert cache.match([1, 2, 3, 4]) == 4
    assert cache.match([1, 2, 7, 8, 9, 10]) == 5
    cache.insert([1, 2])  # already there: nothing new
    assert cache.size == 7


def test_insert_ending_inside_an_edge_splits_it() -> None:
    cache = RadixCache(100)
    cache.insert([1, 2, 3, 4])
    cache.insert([1, 2])
    assert cache.size == 4
    assert cache.match([1, 2, 5]) == 2


def test_capacity_evicts_least_recently_used_leaves_first() -> None:
    cache = RadixCache(10)
    cache.insert([1, 1, 1, 1])  # a
    cache.insert([2, 2, 2, 2])  # b
    assert cache.match([1, 1, 1, 1]) == 4  # a is now more recent than b
    cache.insert([3, 3, 3, 3])  # 12 > 10: evict the oldest leaf, b
    assert cache.size == 8
    assert cache.match([2, 2, 2, 2]) == 0
    assert cache.match([1, 1, 1, 1]) == 4
    assert cache.match([3, 3, 3, 3]) == 4


def test_eviction_removes_leaves_before_their_shared_parent() -> None:
    cache = RadixCache(100)
    cache.insert([5, 5, 1])
    cache.insert([5, 5, 2])
    cache.match([5, 5, 2])
    assert cache.evict(1) == 1  # the older leaf [1] goes; the shared [5, 5] stays
    assert cache.match([5, 5, 1]) == 2
    assert cache.match([5, 5, 2]) == 3
    cache.evict(100)
    assert cache.size == 0
    assert cache.match([5, 5, 2]) == 0


def test_size_never_exceeds_capacity() -> None:
    cache = RadixCache(50)
    for i in range(40):
        cache.insert([i % 7, i, i + 1, i + 2, i + 3])
        assert cache.size <= 50
    cache.insert(list(range(1000, 1200)))  # longer than the whole cache: only its first 50 tokens stay
    assert cache.size == 50
    assert cache.match(list(range(1000, 1200))) == 50


def test_zero_capacity_caches_nothing() -> None:
    cache = RadixCache(0)
    cache.insert([1, 2, 3])
    assert cache.size == 0
    assert cache.match([1, 2, 3]) == 0


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError):
        RadixCache(-1)
