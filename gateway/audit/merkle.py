"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs (SHA-256).

Leaves are given as *leaf hashes* — SHA-256(0x00 || data), `hash_leaf` — because that is
what the audit store keeps for every record. Interior nodes are SHA-256(0x01 || left ||
right) (`hash_children`); the tree over n leaves splits at the largest power of two smaller
than n (RFC 9162 2.1.1), and the empty tree's root is SHA-256 of the empty string.

`CompactRange` holds the roots of the perfect subtrees that make up [0, n): at most
log2(n) hashes. Appending a leaf is amortised O(1), the root is O(log n), so the root of a
log of N records is computed in O(N) time and O(log N) memory, and a checkpointer that keeps
one never re-reads the log. Proofs need the hashes of subtrees off the leaf's path; they are
computed from the leaf hashes a `LeafSource` returns (the store reads them range by range).

The verification functions raise `InvalidProof` and return nothing: there is no boolean to
forget to check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final, Protocol

from gateway.audit.errors import InvalidProof, RecordsArchived

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "NODE_HEIGHT",
    "CompactRange",
    "LeafSource",
    "NodeCache",
    "consistency_proof",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "root_hash",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
_CHUNK: Final = 65_536  # leaf hashes read from a store at a time (2 MiB)
NODE_HEIGHT: Final = 6  # subtrees of 64 leaves and more are saved with checkpoints
_sha256 = hashlib.sha256


class LeafSource(Protocol):
    """Where proofs read leaf hashes from: ``leaf_hashes(start, end)`` is [start, end).

    A source may also have ``stored_node(height, start) -> bytes | None``: the hash of the
    perfect subtree of 2^height leaves from ``start``, if saved; and ``stored_nodes(keys)``,
    the same for many ``(height, start)`` at once, as a dict (`NodeCache` uses them).
    """

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        """The leaf hashes of indexes ``start`` to ``end - 1``, in order."""
        ...


def hash_leaf(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): where RFC 9162 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The perfect-subtree roots covering leaves [0, size), largest (leftmost) first.

    One hash per set bit of ``size``. `append` merges equal-sized neighbours as a binary
    counter carries; `root` folds the roots from the right, which is exactly RFC 9162's
    MTH because its split point always falls on the boundary of the largest perfect subtree.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self._hashes = list(hashes)
        self._size = size
        if size < 0 or len(self._hashes) != size.bit_count():
            raise InvalidProof(
                f"a compact range of size {size} has {size.bit_count()} hashes,"
                f" not {len(self._hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in self._hashes):
            raise InvalidProof("a compact range hash is not 32 bytes")

    @property
    def size(self) -> int:
        """The number of leaves covered."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect-subtree roots, largest first (for persisting the range)."""
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        """An independent copy."""
        return CompactRange(self._size, self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf (given by its leaf hash)."""
        self.extend((leaf_hash,))

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Add the next leaves in order; amortised one node hash per leaf."""
        hashes, size = self._hashes, self._size
        pop, push, sha = hashes.pop, hashes.append, _sha256
        for node in leaf_hashes:
            if len(node) != HASH_SIZE:
                raise InvalidProof(f"leaf {size} has a {len(node)}-byte hash, not 32")
            carry = size
            while carry & 1:  # the new leaf completes a perfect subtree: merge with its twin
                node = sha(b"\x01" + pop() + node).digest()
                carry >>= 1
            push(node)
            size += 1
        self._size = size

    def extend_collecting(
        self, leaf_hashes: Iterable[bytes], min_height: int
    ) -> list[tuple[int, int, bytes]]:
        """`extend`, returning the perfect subtrees it completes of ``min_height`` or more
        levels as ``(height, start, hash)`` (a subtree of height h holds 2^h leaves)."""
        hashes, size = self._hashes, self._size
        pop, push, sha = hashes.pop, hashes.append, _sha256
        nodes: list[tuple[int, int, bytes]] = []
        for node in leaf_hashes:
            if len(node) != HASH_SIZE:
                raise InvalidProof(f"leaf {size} has a {len(node)}-byte hash, not 32")
            carry, height = size, 0
            while carry & 1:
                node = sha(b"\x01" + pop() + node).digest()
                carry >>= 1
                height += 1
                if height >= min_height:
                    nodes.append((height, size + 1 - (1 << height), node))
            push(node)
            size += 1
        self._size = size
        return nodes

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) when ``start`` and ``end`` fall on the boundaries of this
        range's subtrees (so the answer is a fold of some of them); else `RecordsArchived`.

        The sizes of the subtrees fall strictly, so the fold splits exactly as RFC 9162
        splits D[start:end].
        """
        offsets = [0]
        for bit in range(self._size.bit_length() - 1, -1, -1):
            if self._size >> bit & 1:
                offsets.append(offsets[-1] + (1 << bit))
        if start >= end or start not in offsets or end not in offsets:
            raise RecordsArchived(
                f"the hash of records {start} to {end - 1} needs archived records (the log"
                f" keeps the tree state at {self._size} only)"
            )
        nodes = self._hashes[offsets.index(start) : offsets.index(end)]
        node = nodes[-1]
        for left in reversed(nodes[:-1]):
            node = hash_children(left, node)
        return node

    def root(self) -> bytes:
        """MTH of the leaves covered (the empty tree's root when there are none)."""
        if not self._hashes:
            return EMPTY_ROOT
        node = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            node = hash_children(left, node)
        return node


def root_hash(leaf_hashes: Iterable[bytes]) -> bytes:
    """RFC 9162 MTH of a list of leaf hashes, in O(n) time and O(log n) memory."""
    compact = CompactRange()
    compact.extend(leaf_hashes)
    return compact.root()


def _read(source: LeafSource | Sequence[bytes], start: int, end: int) -> Iterable[bytes]:
    if isinstance(source, Sequence):
        if end > len(source):
            raise InvalidProof(f"the tree has {len(source)} leaves, not {end}")
        yield from source[start:end]
        return
    for chunk_start in range(start, end, _CHUNK):
        chunk_end = min(end, chunk_start + _CHUNK)
        chunk = source.leaf_hashes(chunk_start, chunk_end)
        if len(chunk) != chunk_end - chunk_start:
            raise InvalidProof(f"leaves {chunk_start} to {chunk_end - 1} are not all stored")
        yield from chunk


class NodeCache:
    """Hashes of perfect subtrees already computed, for a log that only grows.

    The hash of a full, aligned subtree [k * 2^h, (k + 1) * 2^h) never changes once its
    leaves exist, so proofs after the first reuse the large ones and read only the leaves
    near the tree's right edge. Subtrees smaller than ``min_size`` leaves are not kept
    (reading them is cheap); at most ``max_entries`` are (then the cache stops growing).
    ``base`` is the tree state below the first stored leaf, once retention has archived
    the leaves before it: hashes of subtrees below it come from it (those a proof about a
    stored leaf needs always do), and any other is `RecordsArchived`.
    Not thread-safe: one per reading thread.
    """

    __slots__ = ("_nodes", "base", "max_entries", "min_size")

    def __init__(
        self,
        min_size: int = 1 << NODE_HEIGHT,
        max_entries: int = 500_000,
        base: CompactRange | None = None,
    ) -> None:
        self.min_size = min_size
        self.max_entries = max_entries
        self.base = base if base is not None and base.size else None
        self._nodes: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def prefetch(
        self, source: LeafSource | Sequence[bytes], ranges: Sequence[tuple[int, int]]
    ) -> None:
        """Load, in one call, the saved hashes of the perfect subtrees that computing
        ``ranges`` will look for (a source with ``stored_nodes(keys)``; else nothing)."""
        stored = getattr(source, "stored_nodes", None)
        if stored is None:
            return
        wanted: list[tuple[int, int]] = []  # (height, start)

        def walk(start: int, end: int) -> None:
            size = end - start
            if size < self.min_size or (self.base is not None and end <= self.base.size):
                return
            if size & (size - 1) == 0 and start % size == 0:
                if (start, end) not in self._nodes:
                    wanted.append((size.bit_length() - 1, start))
                return
            k = _split(size)
            walk(start, start + k)
            walk(start + k, end)

        for start, end in ranges:
            walk(start, end)
        if wanted:
            found: dict[tuple[int, int], bytes] = stored(wanted)
            for (height, start), node in found.items():
                if len(self._nodes) < self.max_entries and len(node) == HASH_SIZE:
                    self._nodes[start, start + (1 << height)] = node

    def subtree_hash(self, source: LeafSource | Sequence[bytes], start: int, end: int) -> bytes:
        """MTH(D[start:end]), from the cache where its perfect subtrees are known."""
        size = end - start
        if self.base is not None and start < self.base.size:
            if end <= self.base.size:
                return self.base.range_hash(start, end)
            k = _split(size)  # straddles the base: split as RFC 9162 does
            return hash_children(
                self.subtree_hash(source, start, start + k),
                self.subtree_hash(source, start + k, end),
            )
        if size < self.min_size:
            return root_hash(_read(source, start, end))
        perfect = size & (size - 1) == 0 and start % size == 0
        if perfect and (start, end) in self._nodes:
            return self._nodes[start, end]
        stored = getattr(source, "stored_node", None)
        if perfect and stored is not None:  # saved by the checkpointer: no leaves to read
            found = stored(size.bit_length() - 1, start)
            if found is not None:
                if len(self._nodes) < self.max_entries:
                    self._nodes[start, end] = found
                return found  # type: ignore[no-any-return]
        k = _split(size)
        node = hash_children(
            self.subtree_hash(source, start, start + k), self.subtree_hash(source, start + k, end)
        )
        if perfect and len(self._nodes) < self.max_entries:
            self._nodes[start, end] = node
        return node


def subtree_hash(
    source: LeafSource | Sequence[bytes], start: int, end: int, cache: NodeCache | None = None
) -> bytes:
    """MTH(D[start:end]) of the leaves ``source`` holds (through ``cache`` if given)."""
    if not 0 <= start <= end:
        raise InvalidProof(f"no subtree from {start} to {end}")
    if cache is not None:
        return cache.subtree_hash(source, start, end)
    return root_hash(_read(source, start, end))


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees whose roots form PATH(index, D[size]), leaf first (RFC 9162 2.1.3.1)."""
    ranges: list[tuple[int, int]] = []
    low, high = 0, size
    while high - low > 1:
        k = _split(high - low)
        if index < low + k:
            ranges.append((low + k, high))
            high = low + k
        else:
            ranges.append((low, low + k))
            low += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The subtrees whose roots form PROOF(old, D[new]), bottom first (RFC 9162 2.1.4.1)."""
    ranges: list[tuple[int, int]] = []
    low, high, whole = 0, new, True
    while old != high:  # SUBPROOF(old - low, D[low:high], whole)
        k = _split(high - low)
        if old <= low + k:
            ranges.append((low + k, high))
            high = low + k
        else:
            ranges.append((low, low + k))
            low += k
            whole = False
    if not whole:
        ranges.append((low, high))
    ranges.reverse()
    return ranges


def inclusion_proof(
    source: LeafSource | Sequence[bytes],
    index: int,
    tree_size: int,
    cache: NodeCache | None = None,
) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``tree_size`` leaves."""
    if not 0 <= index < tree_size:
        raise InvalidProof(f"leaf {index} is not in a tree of size {tree_size}")
    ranges = _inclusion_ranges(index, tree_size)
    if cache is not None:
        cache.prefetch(source, ranges)
    return [subtree_hash(source, a, b, cache) for a, b in ranges]


def consistency_proof(
    source: LeafSource | Sequence[bytes],
    old_size: int,
    new_size: int,
    cache: NodeCache | None = None,
) -> list[bytes]:
    """The proof that the tree of ``new_size`` leaves extends the one of ``old_size``.

    Empty when ``old_size`` is 0 or equal to ``new_size`` (nothing to prove).
    """
    if not 0 <= old_size <= new_size:
        raise InvalidProof(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    ranges = _consistency_ranges(old_size, new_size)
    if cache is not None:
        cache.prefetch(source, ranges)
    return [subtree_hash(source, a, b, cache) for a, b in ranges]


def _check_hashes(proof: Sequence[bytes], *hashes: bytes) -> None:
    if len(proof) > 64:  # a tree of 2^64 leaves needs no more
        raise InvalidProof(f"a proof of {len(proof)} hashes is too long")
    if any(len(h) != HASH_SIZE for h in (*proof, *hashes)):
        raise InvalidProof("a hash in the proof is not 32 bytes")


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree with ``root`` (RFC 9162 2.1.3.2).

    Raises `InvalidProof` otherwise.
    """
    _check_hashes(proof, leaf_hash, root)
    if not 0 <= index < tree_size:
        raise InvalidProof(f"leaf {index} is not in a tree of size {tree_size}")
    fn, sn, node = index, tree_size - 1, leaf_hash
    for sibling in proof:
        if sn == 0:
            raise InvalidProof("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            node = hash_children(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = hash_children(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("the inclusion proof is too short")
    if node != root:
        raise InvalidProof(f"leaf {index} is not in the tree of size {tree_size} with that root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (new_size, new_root) extends (old_size, old_root) (RFC 9162 2.1.4.2).

    Raises `InvalidProof` otherwise. For ``old_size`` 0 the old root must be the empty
    tree's; for equal sizes the roots must be equal; both need an empty proof.
    """
    _check_hashes(proof, old_root, new_root)
    if not 0 <= old_size <= new_size:
        raise InvalidProof(f"no consistency from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        if proof:
            raise InvalidProof("the consistency proof must be empty")
        expected = EMPTY_ROOT if old_size == 0 else new_root
        if old_root != expected:
            raise InvalidProof(f"the trees of size {old_size} and {new_size} are not consistent")
        return
    if not proof:
        raise InvalidProof("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for node in path[1:]:
        if sn == 0:
            raise InvalidProof("the consistency proof is too long")
        if fn & 1 or fn == sn:
            first = hash_children(node, first)
            second = hash_children(node, second)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = hash_children(second, node)
        fn >>= 1
        sn >>= 1
    if sn != 0 or first != old_root or second != new_root:
        raise InvalidProof(f"the trees of size {old_size} and {new_size} are not consistent")
