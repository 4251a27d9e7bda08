"""RFC 6962 / RFC 9162 Merkle trees as pure functions: hashing, roots, proofs, verification.

The database-backed log stores the hashes of *perfect, aligned* subtrees: node ``(level, index)``
is the hash of leaves ``[index * 2**level, (index + 1) * 2**level)``. Every RFC 6962 root and proof
element is either such a node or the fold of O(log n) of them along the tree's right border (an
"ephemeral" node), so everything here is written against a :class:`NodeSource`. The
``required_nodes_for_*`` functions tell a storage layer which nodes a computation will read, so
it can fetch them in one query and hand them back as a :class:`NodeMap`.

Verification follows the bit-twiddling algorithms of RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
(consistency) and fails closed: it raises :class:`~chainproof.errors.LedgerIntegrityError` with
the reason, never returns ``False``.

No library is used: the candidates (e.g. ``pymerkle``) use different storage models and none
offers the node-source design the log needs; the algorithms are short and are checked against
every transparency-dev/merkle test vector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from chainproof.errors import BadInputError, ChainproofError, LedgerIntegrityError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LeafList",
    "NodeId",
    "NodeMap",
    "NodeSource",
    "append_leaf",
    "append_leaves",
    "consistency_proof",
    "frontier_ids",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "required_nodes_for_consistency",
    "required_nodes_for_inclusion",
    "required_nodes_for_root",
    "root",
    "root_from_frontier",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

# Tree sizes are uint64 in every RFC 6962 wire format; refusing larger values keeps bit tricks sane.
_MAX_SIZE = 1 << 64

NodeId = tuple[int, int]
"""``(level, index)`` of a perfect aligned subtree."""

_UNCACHED_LEVELS = 4  # LeafList caches only subtrees of more than 2**4 leaves

_PROOF_HINT = (
    "the proof does not link this leaf/tree to that root; re-fetch the proof from the log and "
    "check it against a checkpoint you trust. If it still fails, the log has been tampered with"
)


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# --- node sources ---------------------------------------------------------------------------------


@runtime_checkable
class NodeSource(Protocol):
    """Anything that can return the hash of the perfect aligned subtree ``(level, index)``."""

    def node(self, level: int, index: int) -> bytes: ...


class LeafList:
    """A :class:`NodeSource` over an in-memory list of leaf hashes.

    Interior nodes are computed on demand and cached, so a proof costs O(log n) hashes after the
    first computation touching the same subtrees.
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        for i, h in enumerate(leaf_hashes):
            _check_hash(h, f"leaf hash #{i}", BadInputError)
        self._leaves: Sequence[bytes] = tuple(leaf_hashes)  # later edits must not skew the cache
        self._cache: dict[NodeId, bytes] = {}

    def __len__(self) -> int:
        return len(self._leaves)

    def node(self, level: int, index: int) -> bytes:
        if level < 0 or index < 0 or (index + 1) << level > len(self._leaves):
            raise BadInputError(
                f"node (level {level}, index {index}) is not a complete subtree of a list of "
                f"{len(self._leaves)} leaves",
                hint="ask only for nodes inside the tree size (a bug in the caller)",
            )
        if level <= _UNCACHED_LEVELS:
            # Small subtrees are rehashed from the leaves rather than cached: caching every
            # node would cost ~150 bytes per leaf for large lists, for little gain.
            layer = [bytes(h) for h in self._leaves[index << level : (index + 1) << level]]
            while len(layer) > 1:
                layer = [node_hash(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
            return layer[0]
        key = (level, index)
        cached = self._cache.get(key)
        if cached is None:
            cached = node_hash(self.node(level - 1, 2 * index), self.node(level - 1, 2 * index + 1))
            self._cache[key] = cached
        return cached


class NodeMap:
    """A :class:`NodeSource` over ``{(level, index): hash}``, e.g. the rows one query returned.

    A missing node means the store lost data the log promised to keep, hence an integrity error.
    """

    def __init__(self, nodes: Mapping[NodeId, bytes]) -> None:
        self._nodes = nodes

    def node(self, level: int, index: int) -> bytes:
        try:
            value = self._nodes[(level, index)]
        except KeyError:
            raise LedgerIntegrityError(
                f"Merkle node (level {level}, index {index}) is missing from the log's node store",
                hint="fetch every node listed by required_nodes_for_*(); if it was fetched, the "
                "node table was truncated or edited: run `chainproof audit verify`",
            ) from None
        _check_hash(value, f"stored node (level {level}, index {index})", LedgerIntegrityError)
        return bytes(value)


# --- plans: which perfect nodes make up a root or a proof -----------------------------------------


def _range_ids(begin: int, end: int) -> list[NodeId]:
    """Perfect nodes covering ``[begin, end)``, largest (leftmost) first.

    Only valid when ``begin`` is aligned to the largest piece, which holds for every range
    RFC 6962 splits a tree into (the whole tree, and the right-border remainders).
    """
    ids: list[NodeId] = []
    pos = begin
    count = end - begin
    for level in range(count.bit_length() - 1, -1, -1):
        if (count >> level) & 1:
            ids.append((level, pos >> level))
            pos += 1 << level
    return ids


def _path_plan(level: int, index: int, size: int) -> list[list[NodeId]]:
    """Proof elements (each a fold of perfect nodes) from node (level, index) up to the root.

    Walks up the aligned tree; at each level the sibling is either a perfect left node, a perfect
    right node, a partial right node (folded from its perfect pieces: the RFC's ephemeral node), or
    absent because the node sits on the right border and RFC 6962 lifts it up a level.
    """
    plan: list[list[NodeId]] = []
    lvl, idx = level, index
    while not (idx == 0 and (1 << lvl) >= size):
        sibling = idx ^ 1
        if sibling < idx:
            plan.append([(lvl, sibling)])
        else:
            start = sibling << lvl
            if start < size:
                plan.append(_range_ids(start, min(start + (1 << lvl), size)))
        lvl += 1
        idx >>= 1
    return plan


def _inclusion_plan(index: int, size: int) -> list[list[NodeId]]:
    return _path_plan(0, index, size)


def _consistency_plan(old_size: int, new_size: int) -> list[list[NodeId]]:
    """RFC 9162 §2.1.4.1 SUBPROOF, expressed on aligned nodes.

    The proof is the largest perfect subtree ending at ``old_size`` (omitted when that subtree is
    the whole old tree: the verifier already has it as the old root) followed by that node's
    path up to the new root.
    """
    if old_size == 0 or old_size >= new_size:
        return []
    level = (old_size & -old_size).bit_length() - 1  # trailing zeros
    index = (old_size >> level) - 1
    head: list[list[NodeId]] = [[(level, index)]] if index != 0 else []
    return head + _path_plan(level, index, new_size)


def _flatten(plan: Iterable[list[NodeId]]) -> list[NodeId]:
    seen: dict[NodeId, None] = {}
    for element in plan:
        for node_id in element:
            seen.setdefault(node_id, None)
    return list(seen)


def _fold(ids: Sequence[NodeId], source: NodeSource) -> bytes:
    acc = source.node(*ids[-1])
    for node_id in reversed(ids[:-1]):
        acc = node_hash(source.node(*node_id), acc)
    return acc


def required_nodes_for_root(size: int) -> list[NodeId]:
    """Nodes :func:`root` reads for a tree of ``size`` leaves: its right frontier, largest first."""
    _check_size(size, "tree size")
    return _range_ids(0, size)


frontier_ids = required_nodes_for_root


def required_nodes_for_inclusion(index: int, size: int) -> list[NodeId]:
    """Nodes :func:`inclusion_proof` reads for leaf ``index`` in a tree of ``size`` leaves."""
    _check_index(index, size)
    return _flatten(_inclusion_plan(index, size))


def required_nodes_for_consistency(old_size: int, new_size: int) -> list[NodeId]:
    """Nodes :func:`consistency_proof` reads to prove ``old_size`` is a prefix of ``new_size``."""
    _check_sizes(old_size, new_size)
    return _flatten(_consistency_plan(old_size, new_size))


# --- generation -----------------------------------------------------------------------------------


def _as_source(nodes: Sequence[bytes] | NodeSource, size: int) -> NodeSource:
    if isinstance(nodes, NodeSource):
        return nodes
    if isinstance(nodes, (bytes, bytearray, str)):
        raise BadInputError(
            "expected a list of leaf hashes or a NodeSource, got a single bytes/str value",
            hint="pass [leaf_hash(...), ...]",
        )
    if size > len(nodes):
        raise BadInputError(
            f"tree size {size} is larger than the {len(nodes)} leaf hashes given",
            hint="pass every leaf hash up to the tree size",
        )
    return LeafList(nodes)


def root(leaves: Sequence[bytes] | NodeSource, size: int | None = None) -> bytes:
    """RFC 6962 Merkle tree hash of the first ``size`` leaves (default: all given leaf hashes).

    ``leaves`` is a list of leaf hashes (see :func:`leaf_hash`) or a :class:`NodeSource`; with a
    node source, ``size`` is required.
    """
    if size is None:
        if isinstance(leaves, NodeSource):
            raise BadInputError(
                "root() over a NodeSource needs the tree size",
                hint="call root(source, size)",
            )
        size = len(leaves)
    _check_size(size, "tree size")
    if size == 0:
        return EMPTY_ROOT
    return _fold(_range_ids(0, size), _as_source(leaves, size))


def inclusion_proof(index: int, size: int, nodes: Sequence[bytes] | NodeSource) -> list[bytes]:
    """RFC 6962 audit path for leaf ``index`` in the tree of ``size`` leaves, leaf side first."""
    _check_index(index, size)
    source = _as_source(nodes, size)
    return [_fold(element, source) for element in _inclusion_plan(index, size)]


def consistency_proof(
    old_size: int, new_size: int, nodes: Sequence[bytes] | NodeSource
) -> list[bytes]:
    """RFC 6962 consistency proof that the tree of ``old_size`` is a prefix of ``new_size``.

    Empty when ``old_size`` is 0 or equals ``new_size`` (nothing to prove).
    """
    _check_sizes(old_size, new_size)
    source = _as_source(nodes, new_size)
    return [_fold(element, source) for element in _consistency_plan(old_size, new_size)]


# --- appending with a right frontier --------------------------------------------------------------


def _check_frontier(frontier: Sequence[bytes], size: int) -> None:
    expected = bin(size).count("1")
    if len(frontier) != expected:
        raise LedgerIntegrityError(
            f"a tree of size {size} has a frontier of {expected} nodes, got {len(frontier)}",
            hint="load the frontier with frontier_ids(size); a mismatch means the stored log "
            "state is inconsistent: run `chainproof audit verify`",
        )
    for i, h in enumerate(frontier):
        _check_hash(h, f"frontier node #{i}", LedgerIntegrityError)


def append_leaf(
    frontier: Sequence[bytes], size: int, leaf: bytes
) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """Append one leaf hash to a tree of ``size`` leaves given its right frontier.

    ``frontier`` holds the hashes of :func:`frontier_ids` ``(size)``, largest first. Returns the
    frontier of the tree of ``size + 1`` leaves and the perfect nodes completed by this leaf,
    ``(level, index, hash)`` from the leaf itself upwards: storing them keeps every node a proof
    needs available.
    """
    _check_size(size, "tree size")
    if size + 1 >= _MAX_SIZE:
        raise BadInputError("the log is full (2**64 - 1 leaves)", hint="start a new log")
    _check_frontier(frontier, size)
    stack = [bytes(h) for h in frontier]
    new_nodes: list[tuple[int, int, bytes]] = []
    _append(stack, size, leaf, new_nodes)
    return stack, new_nodes


def _append(
    stack: list[bytes], size: int, leaf: bytes, new_nodes: list[tuple[int, int, bytes]]
) -> None:
    _check_hash(leaf, "leaf hash", BadInputError)
    carry = bytes(leaf)
    new_nodes.append((0, size, carry))
    level = 0
    # Each set low bit of `size` is a completed left sibling waiting for a right partner.
    while (size >> level) & 1:
        carry = node_hash(stack.pop(), carry)
        level += 1
        new_nodes.append((level, size >> level, carry))
    stack.append(carry)


def append_leaves(
    frontier: Sequence[bytes], size: int, leaves: Iterable[bytes]
) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """:func:`append_leaf` for a batch; returns the final frontier and every node to store."""
    _check_size(size, "tree size")
    _check_frontier(frontier, size)
    stack = [bytes(h) for h in frontier]
    new_nodes: list[tuple[int, int, bytes]] = []
    for leaf in leaves:
        if size + 1 >= _MAX_SIZE:
            raise BadInputError("the log is full (2**64 - 1 leaves)", hint="start a new log")
        _append(stack, size, leaf, new_nodes)
        size += 1
    return stack, new_nodes


def root_from_frontier(frontier: Sequence[bytes], size: int) -> bytes:
    """Root of the tree of ``size`` leaves from its right frontier (largest node first)."""
    _check_size(size, "tree size")
    _check_frontier(frontier, size)
    if size == 0:
        return EMPTY_ROOT
    acc = bytes(frontier[-1])
    for h in reversed(frontier[:-1]):
        acc = node_hash(bytes(h), acc)
    return acc


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ------------------------------------------------


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Raises :class:`LedgerIntegrityError` with the reason when it is not. RFC 6962 roots do not
    commit to the tree size (a proof may also verify for another size of the same shape), so
    ``size`` and ``root`` must come together from a signed checkpoint, never from the prover.
    """
    _check_int(index, "leaf index")
    _check_int(size, "tree size")
    if size == 0:
        raise LedgerIntegrityError(
            f"no inclusion proof can exist in an empty tree (leaf index {index}, tree size 0)",
            hint=_PROOF_HINT,
        )
    if index >= size:
        raise LedgerIntegrityError(
            f"leaf index {index} is outside a tree of size {size}", hint=_PROOF_HINT
        )
    _check_hash(leaf_hash, "leaf hash", LedgerIntegrityError)
    _check_hash(root, "root hash", LedgerIntegrityError)
    _check_proof_hashes(proof)
    expected = len(_inclusion_plan(index, size))
    if len(proof) != expected:
        raise LedgerIntegrityError(
            f"inclusion proof has {len(proof)} hashes; for leaf {index} in a tree of size {size} "
            f"it must have exactly {expected}",
            hint=_PROOF_HINT,
        )

    fn, sn = index, size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            raise LedgerIntegrityError("inclusion proof is too long", hint=_PROOF_HINT)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LedgerIntegrityError("inclusion proof is too short", hint=_PROOF_HINT)
    if r != root:
        raise LedgerIntegrityError(
            f"inclusion proof for leaf {index} in a tree of size {size} leads to root "
            f"{r.hex()}, not the expected {bytes(root).hex()}",
            hint=_PROOF_HINT,
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (``old_size``, ``old_root``) is a prefix of (``new_size``, ``new_root``).

    Raises :class:`LedgerIntegrityError` with the reason when it is not. A consistency check from
    the empty tree (``old_size == 0 < new_size``) is refused: it proves nothing about
    ``new_root``, so a caller relying on it would be fooled; verify the new root directly. As for
    :func:`verify_inclusion`, sizes must come with their roots from signed checkpoints.
    """
    _check_int(old_size, "old tree size")
    _check_int(new_size, "new tree size")
    if old_size > new_size:
        raise LedgerIntegrityError(
            f"old tree size {old_size} is larger than new tree size {new_size}: the log shrank",
            hint="a log never loses entries; this is truncation or a rollback",
        )
    if old_size == new_size:
        if len(proof) != 0:
            raise LedgerIntegrityError(
                f"both trees have size {old_size}, so the proof must be empty, "
                f"got {len(proof)} hashes",
                hint=_PROOF_HINT,
            )
        if old_size == 0 and (old_root != EMPTY_ROOT or new_root != EMPTY_ROOT):
            raise LedgerIntegrityError(
                "a tree of size 0 must have the empty root SHA-256('')",
                hint=_PROOF_HINT,
            )
        # Same size: consistent iff the roots are equal (a fork otherwise). The hash length is
        # deliberately not checked here, matching the transparency-dev reference behaviour.
        if old_root != new_root:
            raise LedgerIntegrityError(
                f"two different roots for the same tree size {old_size}: the log forked "
                f"({bytes(old_root).hex()} vs {bytes(new_root).hex()})",
                hint="keep both signed checkpoints: together they prove the log misbehaved",
            )
        return
    if old_size == 0:
        raise LedgerIntegrityError(
            f"a consistency proof from the empty tree to size {new_size} proves nothing",
            hint="verify the new root directly (e.g. recompute it from the entries)",
        )
    if len(proof) == 0:
        raise LedgerIntegrityError(
            f"empty consistency proof from size {old_size} to size {new_size}", hint=_PROOF_HINT
        )
    _check_hash(old_root, "old root hash", LedgerIntegrityError)
    _check_hash(new_root, "new root hash", LedgerIntegrityError)
    _check_proof_hashes(proof)
    expected = len(_consistency_plan(old_size, new_size))
    if len(proof) != expected:
        raise LedgerIntegrityError(
            f"consistency proof has {len(proof)} hashes; from size {old_size} to size {new_size} "
            f"it must have exactly {expected}",
            hint=_PROOF_HINT,
        )

    path = [bytes(p) for p in proof]
    if old_size & (old_size - 1) == 0:  # exact power of 2: the old root is the first node
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise LedgerIntegrityError("consistency proof is too long", hint=_PROOF_HINT)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LedgerIntegrityError("consistency proof is too short", hint=_PROOF_HINT)
    problems = []
    if fr != old_root:
        problems.append(f"proof rebuilds old root {fr.hex()}, expected {bytes(old_root).hex()}")
    if sr != new_root:
        problems.append(f"proof rebuilds new root {sr.hex()}, expected {bytes(new_root).hex()}")
    if problems:
        raise LedgerIntegrityError(
            f"consistency proof from size {old_size} to size {new_size} does not verify",
            hint=_PROOF_HINT,
            problems=problems,
        )


# --- argument checks ------------------------------------------------------------------------------


def _check_int(value: object, what: str) -> None:
    # bool is an int subclass; True as a tree size is always a bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInputError(f"{what} must be an integer, got {type(value).__name__}")
    if value < 0 or value >= _MAX_SIZE:
        raise BadInputError(f"{what} {value} is out of range [0, 2**64)")


def _check_size(size: int, what: str) -> None:
    _check_int(size, what)


def _check_index(index: int, size: int) -> None:
    _check_int(index, "leaf index")
    _check_int(size, "tree size")
    if index >= size:
        raise BadInputError(
            f"leaf index {index} is outside a tree of size {size}",
            hint="leaf indexes start at 0 and must be below the tree size",
        )


def _check_sizes(old_size: int, new_size: int) -> None:
    _check_int(old_size, "old tree size")
    _check_int(new_size, "new tree size")
    if old_size > new_size:
        raise BadInputError(
            f"old tree size {old_size} is larger than new tree size {new_size}",
            hint="a consistency proof goes from an older (smaller) tree to a newer one",
        )


def _check_hash(value: object, what: str, error: type[ChainproofError]) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise error(f"{what} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise error(
            f"{what} is {len(value)} bytes, a SHA-256 hash is {HASH_SIZE}",
            hint="pass raw digest bytes, not hex or base64 text",
        )


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    if isinstance(proof, (bytes, bytearray, str)):
        raise BadInputError("a proof is a list of hashes, not a single bytes/str value")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof hash #{i}", LedgerIntegrityError)
