"""RFC 9162 Merkle trees: published vectors, an independent recursive recomputation, proofs.

The reference data are the Certificate Transparency test inputs of RFC 6962 (the eight
leaves below); the expected roots and proofs are the values every CT implementation
publishes for them. The ``_naive_*`` functions are the RFC's recursive definitions written
out directly, sharing no code with `gateway.audit.merkle`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.errors import InvalidProof
from gateway.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeCache,
    consistency_proof,
    hash_children,
    hash_leaf,
    inclusion_proof,
    root_hash,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

CT_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
CT_CONSISTENCY = {
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
CT_LEAVES = [hash_leaf(d) for d in CT_INPUTS]


# --- RFC 9162 2.1, written out recursively and independently -------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _naive_mth(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (the leaves are already hashed with the 0x00 prefix)."""
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return _h(b"\x01" + _naive_mth(leaves[:k]) + _naive_mth(leaves[k:]))


def _naive_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return [*_naive_path(m, leaves[:k]), _naive_mth(leaves[k:])]
    return [*_naive_path(m - k, leaves[k:]), _naive_mth(leaves[:k])]


def _naive_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [_naive_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*_naive_subproof(m, leaves[:k], whole), _naive_mth(leaves[k:])]
    return [*_naive_subproof(m - k, leaves[k:], False), _naive_mth(leaves[:k])]


def _leaves(n: int, salt: int = 0) -> list[bytes]:
    return [_h(b"\x00" + f"{salt}:{i}".encode()) for i in range(n)]


# --- published vectors ---------------------------------------------------------------------


def test_ct_roots_for_every_size() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    for size, expected in enumerate(CT_ROOTS):
        assert root_hash(CT_LEAVES[:size]).hex() == expected
        assert _naive_mth(CT_LEAVES[:size]).hex() == expected


def test_leaf_and_node_prefixes() -> None:
    assert hash_leaf(b"").hex() == CT_ROOTS[1]
    assert hash_children(CT_LEAVES[0], CT_LEAVES[1]).hex() == CT_ROOTS[2]


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_ct_inclusion_proofs(index: int, size: int) -> None:
    proof = inclusion_proof(CT_LEAVES, index, size)
    assert [p.hex() for p in proof] == CT_INCLUSION[index, size]
    root = bytes.fromhex(CT_ROOTS[size])
    verify_inclusion(CT_LEAVES[index], index, size, proof, root)


@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_ct_consistency_proofs(old: int, new: int) -> None:
    proof = consistency_proof(CT_LEAVES, old, new)
    assert [p.hex() for p in proof] == CT_CONSISTENCY[old, new]
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    verify_consistency(old, new, old_root, new_root, proof)
    with pytest.raises(InvalidProof):
        verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old - 1]), new_root, proof)


# --- against the naive recursion, exhaustively up to 64 leaves -----------------------------


def test_incremental_root_matches_recursion_for_every_size() -> None:
    leaves = _leaves(300)
    compact = CompactRange()
    for size in range(301):
        assert compact.root() == _naive_mth(leaves[:size]), size
        assert len(compact.hashes) == size.bit_count()  # O(log n) state
        if size < 300:
            compact.append(leaves[size])


def test_every_inclusion_proof_up_to_64() -> None:
    leaves = _leaves(64)
    for size in range(1, 65):
        root = _naive_mth(leaves[:size])
        for index in range(size):
            proof = inclusion_proof(leaves, index, size)
            assert proof == _naive_path(index, leaves[:size])
            verify_inclusion(leaves[index], index, size, proof, root)
            if size > 1:  # the same proof proves nothing about another leaf or index
                with pytest.raises(InvalidProof):
                    verify_inclusion(leaves[index - 1], index, size, proof, root)
                with pytest.raises(InvalidProof):
                    verify_inclusion(leaves[index], (index + 1) % size, size, proof, root)


def test_every_consistency_proof_up_to_64() -> None:
    leaves = _leaves(64)
    roots = [_naive_mth(leaves[:n]) for n in range(65)]
    for new in range(1, 65):
        for old in range(1, new + 1):
            proof = consistency_proof(leaves, old, new)
            assert proof == _naive_subproof(old, leaves[:new], True)
            verify_consistency(old, new, roots[old], roots[new], proof)
            if old < new:
                with pytest.raises(InvalidProof):
                    verify_consistency(old, new, roots[old - 1], roots[new], proof)
                with pytest.raises(InvalidProof):
                    verify_consistency(old, new, roots[old], roots[new - 1], proof)


def test_random_large_trees() -> None:
    rng = random.Random(9162)
    leaves = _leaves(5000, salt=1)
    for _ in range(30):
        new = rng.randint(65, 5000)
        old = rng.randint(1, new)
        index = rng.randrange(new)
        root, old_root = root_hash(leaves[:new]), root_hash(leaves[:old])
        verify_inclusion(leaves[index], index, new, inclusion_proof(leaves, index, new), root)
        verify_consistency(old, new, old_root, root, consistency_proof(leaves, old, new))


def test_empty_and_trivial_consistency() -> None:
    leaves = _leaves(5)
    root = root_hash(leaves)
    assert consistency_proof(leaves, 0, 5) == []
    assert consistency_proof(leaves, 5, 5) == []
    verify_consistency(0, 5, EMPTY_ROOT, root, [])
    verify_consistency(5, 5, root, root, [])
    with pytest.raises(InvalidProof):
        verify_consistency(0, 5, root, root, [])
    with pytest.raises(InvalidProof):
        verify_consistency(5, 5, EMPTY_ROOT, root, [])
    with pytest.raises(InvalidProof):
        verify_consistency(2, 5, root_hash(leaves[:2]), root, [])  # a real step needs a proof


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: p[:-1], "too short"),
        (lambda p: [*p, p[0]], "too long"),
        (lambda p: [p[0][:31], *p[1:]], "32 bytes"),
        (lambda p: [bytes(32), *p[1:]], "not in the tree"),
    ],
)
def test_tampered_inclusion_proofs_are_refused(
    change: Callable[[list[bytes]], list[bytes]], reason: str
) -> None:
    leaves = _leaves(13)
    proof = inclusion_proof(leaves, 6, 13)
    with pytest.raises(InvalidProof, match=reason):
        verify_inclusion(leaves[6], 6, 13, change(proof), root_hash(leaves))


def test_out_of_range_requests_are_refused() -> None:
    leaves = _leaves(4)
    with pytest.raises(InvalidProof):
        inclusion_proof(leaves, 4, 4)
    with pytest.raises(InvalidProof):
        inclusion_proof(leaves, 0, 5)  # more leaves than there are
    with pytest.raises(InvalidProof):
        consistency_proof(leaves, 3, 2)
    with pytest.raises(InvalidProof):
        verify_inclusion(leaves[0], 0, 0, [], EMPTY_ROOT)
    with pytest.raises(InvalidProof):
        subtree_hash(leaves, 3, 1)


def test_compact_range_round_trips_and_rejects_bad_state() -> None:
    leaves = _leaves(77)
    compact = CompactRange()
    compact.extend(leaves[:50])
    saved = CompactRange(compact.size, compact.hashes)
    compact.extend(leaves[50:])
    saved.extend(leaves[50:])
    assert saved.root() == compact.root() == root_hash(leaves)
    copy = saved.copy()
    copy.append(leaves[0])
    assert saved.size == 77 and copy.size == 78
    with pytest.raises(InvalidProof):
        CompactRange(5, [bytes(32)])  # 5 = 0b101 needs two subtree roots
    with pytest.raises(InvalidProof):
        CompactRange().append(b"short")


class _Source:
    """A `LeafSource` that counts what it is asked for (as the store is)."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves, self.reads = leaves, 0

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        self.reads += end - start
        return self.leaves[start:end]


def test_proofs_from_a_leaf_source_read_each_leaf_at_most_once() -> None:
    leaves = _leaves(1000)
    source = _Source(leaves)
    assert inclusion_proof(source, 700, 1000) == inclusion_proof(leaves, 700, 1000)
    assert source.reads == 999  # every leaf but the one proved
    source.reads = 0
    assert consistency_proof(source, 300, 1000) == consistency_proof(leaves, 300, 1000)
    assert source.reads <= 1000
    with pytest.raises(InvalidProof, match="not all stored"):
        inclusion_proof(_Source(leaves[:10]), 3, 20)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_proofs_hold_for_any_sizes(data: st.DataObject) -> None:
    new = data.draw(st.integers(1, 400), label="new")
    old = data.draw(st.integers(0, new), label="old")
    index = data.draw(st.integers(0, new - 1), label="index")
    leaves = _leaves(new, salt=new)
    root = _naive_mth(leaves)
    verify_inclusion(leaves[index], index, new, inclusion_proof(leaves, index, new), root)
    proof = consistency_proof(leaves, old, new)
    verify_consistency(old, new, _naive_mth(leaves[:old]), root, proof)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 200), st.data())
def test_a_flipped_bit_anywhere_in_a_proof_is_refused(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size, salt=7)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(leaves, index, size)
    which = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    broken = list(proof)
    flipped = bytearray(broken[which])
    flipped[bit // 8] ^= 1 << (bit % 8)
    broken[which] = bytes(flipped)
    with pytest.raises(InvalidProof):
        verify_inclusion(leaves[index], index, size, broken, root_hash(leaves))


def test_a_node_cache_gives_the_same_proofs_and_spares_reads() -> None:
    leaves = _leaves(3000, salt=3)
    source = _Source(leaves)
    cache = NodeCache(min_size=64)
    rng = random.Random(42)
    for _ in range(40):
        size = rng.randint(1, 3000)
        index = rng.randrange(size)
        old = rng.randint(0, size)
        assert inclusion_proof(source, index, size, cache) == inclusion_proof(leaves, index, size)
        assert consistency_proof(source, old, size, cache) == consistency_proof(leaves, old, size)
    assert 0 < len(cache) <= 3000 // 64 * 2
    source.reads = 0
    inclusion_proof(source, 1234, 3000, cache)
    assert source.reads < 512  # without the cache: 2999; now only small uncached pieces
    assert subtree_hash(source, 0, 3000, cache) == root_hash(leaves)


def test_extend_collecting_names_every_perfect_subtree_it_completes() -> None:
    from gateway.audit.merkle import CompactRange, subtree_hash

    leaves = [hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(1000)]
    compact = CompactRange()
    nodes = compact.extend_collecting(leaves[:333], 3) + compact.extend_collecting(leaves[333:], 3)
    assert compact.root() == root_hash(leaves)
    expected = [
        (height, start)
        for height in range(3, 10)
        for start in range(0, 1000 - (1 << height) + 1, 1 << height)
    ]
    assert sorted((h, s) for h, s, _ in nodes) == sorted(expected)
    for height, start, node in nodes:
        assert node == subtree_hash(leaves, start, start + (1 << height))
