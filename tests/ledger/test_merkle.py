"""RFC 6962 Merkle trees: transparency-dev vectors, an RFC reference, attacks, properties."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainproof.errors import BadInputError, LedgerIntegrityError
from chainproof.ledger import merkle as m

# The 8-leaf tree behind the transparency-dev vectors (see shared/vectors/merkle/README.md).
TREE_LEAVES = [
    bytes.fromhex(x)
    for x in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
TREE_HASHES = [m.leaf_hash(x) for x in TREE_LEAVES]
# Roots of its prefixes of size 1..8 (transparency-dev/merkle testonly reference roots).
PREFIX_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EXPECTED_VECTOR_COUNT = 196


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _hashes(n: int, salt: bytes = b"") -> list[bytes]:
    return [m.leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


# --- an independent reference: RFC 6962 §2.1 written recursively, straight from the text ----------


def _ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return m.node_hash(_ref_mth(d[:k]), _ref_mth(d[k:]))


def _ref_path(i: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if i < k:
        return [*_ref_path(i, d[:k]), _ref_mth(d[k:])]
    return [*_ref_path(i - k, d[k:]), _ref_mth(d[:k])]


def _ref_subproof(mm: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if mm == n:
        return [] if b else [_ref_mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if mm <= k:
        return [*_ref_subproof(mm, d[:k], b), _ref_mth(d[k:])]
    return [*_ref_subproof(mm - k, d[k:], False), _ref_mth(d[:k])]


# --- the transparency-dev vectors ----------------------------------------------------------------


def test_vector_count(merkle_vectors_dir: Path) -> None:
    assert len(list(merkle_vectors_dir.glob("**/*.json"))) == EXPECTED_VECTOR_COUNT


def test_vector(merkle_vector: Path) -> None:
    case = json.loads(merkle_vector.read_text())
    proof = [_b64(p) for p in case["proof"] or []]
    # Cases in the numbered folders are built from the README's 8-leaf tree; their happy paths
    # must also be what our generator produces.
    from_reference_tree = merkle_vector.parent.name.isdigit() and "additional" not in str(
        merkle_vector
    )

    if "leafIdx" in case:
        args = (
            _b64(case["leafHash"]),
            case["leafIdx"],
            case["treeSize"],
            proof,
            _b64(case["root"]),
        )
        if case["wantErr"]:
            with pytest.raises(LedgerIntegrityError):
                m.verify_inclusion(*args)
            return
        m.verify_inclusion(*args)
        if from_reference_tree:
            size, index = case["treeSize"], case["leafIdx"]
            assert m.root(TREE_HASHES, size) == _b64(case["root"])
            assert TREE_HASHES[index] == _b64(case["leafHash"])
            assert m.inclusion_proof(index, size, TREE_HASHES) == proof
    else:
        args2 = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), proof)
        if case["wantErr"]:
            with pytest.raises(LedgerIntegrityError):
                m.verify_consistency(*args2)
            return
        m.verify_consistency(*args2)
        if from_reference_tree:
            size1, size2 = case["size1"], case["size2"]
            assert m.root(TREE_HASHES, size1) == _b64(case["root1"])
            assert m.root(TREE_HASHES, size2) == _b64(case["root2"])
            assert m.consistency_proof(size1, size2, TREE_HASHES) == proof


# --- known answers and the reference implementation -----------------------------------------------


def test_known_answers() -> None:
    assert m.EMPTY_ROOT.hex() == hashlib.sha256(b"").hexdigest()
    assert m.root([]) == m.EMPTY_ROOT
    assert m.leaf_hash(b"").hex() == PREFIX_ROOTS[0]
    for size in range(1, 9):
        assert m.root(TREE_HASHES, size).hex() == PREFIX_ROOTS[size - 1]
    # Domain separation: a leaf can never pass for an interior node with the same bytes.
    a, b = TREE_HASHES[0], TREE_HASHES[1]
    assert m.leaf_hash(a + b) != m.node_hash(a, b)


def test_matches_rfc_reference_exhaustively_for_small_trees() -> None:
    leaves = _hashes(40)
    for n in range(1, 41):
        d = leaves[:n]
        assert m.root(leaves, n) == _ref_mth(d)
        for i in range(n):
            assert m.inclusion_proof(i, n, leaves) == _ref_path(i, d)
        for old in range(1, n):
            assert m.consistency_proof(old, n, leaves) == _ref_subproof(old, d, True)


def test_proofs_are_logarithmic() -> None:
    size = 1_000_003
    assert len(m.required_nodes_for_root(size)) == bin(size).count("1")
    assert len(m.required_nodes_for_inclusion(size - 1, size)) <= 2 * 21
    assert len(m.required_nodes_for_consistency(654_321, size)) <= 2 * 21


# --- storage-shaped sources --------------------------------------------------------------------- -


def _frontier_store(leaves: list[bytes]) -> tuple[dict[m.NodeId, bytes], list[bytes]]:
    store: dict[m.NodeId, bytes] = {}
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        frontier, new_nodes = m.append_leaf(frontier, size, leaf)
        for level, index, h in new_nodes:
            assert (level, index) not in store, "a perfect node is written exactly once"
            store[(level, index)] = h
    return store, frontier


def test_required_nodes_are_sufficient() -> None:
    """A NodeMap holding only the listed nodes is enough: the DB can fetch them in one query."""
    leaves = _hashes(77)
    store, _ = _frontier_store(leaves)
    for size in (1, 2, 5, 64, 77):
        only = m.NodeMap({k: store[k] for k in m.required_nodes_for_root(size)})
        assert m.root(only, size) == m.root(leaves, size)
        for index in range(size):
            ids = m.required_nodes_for_inclusion(index, size)
            only = m.NodeMap({k: store[k] for k in ids})
            assert m.inclusion_proof(index, size, only) == m.inclusion_proof(index, size, leaves)
        for old in range(size + 1):
            ids = m.required_nodes_for_consistency(old, size)
            only = m.NodeMap({k: store[k] for k in ids})
            assert m.consistency_proof(old, size, only) == m.consistency_proof(old, size, leaves)


def test_missing_node_is_an_integrity_error() -> None:
    leaves = _hashes(10)
    store, _ = _frontier_store(leaves)
    del store[(1, 1)]
    with pytest.raises(LedgerIntegrityError, match=r"level 1, index 1"):
        m.inclusion_proof(0, 10, m.NodeMap(store))


def test_stored_node_of_wrong_length_is_an_integrity_error() -> None:
    with pytest.raises(LedgerIntegrityError, match="32"):
        m.root(m.NodeMap({(0, 0): b"short"}), 1)


def test_append_checks_frontier_shape() -> None:
    frontier, _ = m.append_leaves([], 0, _hashes(5))
    assert len(frontier) == 2
    with pytest.raises(LedgerIntegrityError, match="frontier"):
        m.append_leaf(frontier, 7, m.leaf_hash(b"x"))
    with pytest.raises(LedgerIntegrityError, match="frontier"):
        m.root_from_frontier(frontier[:1], 5)
    with pytest.raises(BadInputError):
        m.append_leaf(frontier, 5, b"not a hash")


def test_leaflist_rejects_nodes_outside_the_tree() -> None:
    source = m.LeafList(_hashes(5))
    with pytest.raises(BadInputError):
        source.node(2, 1)  # leaves [4, 8) are not all there
    assert source.node(2, 0) == m.root(_hashes(4))


# --- argument and bound checks --------------------------------------------------------------------


def test_generation_rejects_bad_arguments() -> None:
    leaves = _hashes(4)
    with pytest.raises(BadInputError):
        m.inclusion_proof(4, 4, leaves)
    with pytest.raises(BadInputError):
        m.inclusion_proof(0, 0, leaves)
    with pytest.raises(BadInputError):
        m.inclusion_proof(0, 5, leaves)  # more leaves than given
    with pytest.raises(BadInputError):
        m.consistency_proof(3, 2, leaves)
    with pytest.raises(BadInputError):
        m.root(leaves, True)
    with pytest.raises(BadInputError):
        m.root(leaves, -1)
    with pytest.raises(BadInputError):
        m.root(m.LeafList(leaves))  # a node source needs an explicit size
    with pytest.raises(BadInputError):
        m.LeafList([b"\x00" * 31])
    assert m.consistency_proof(0, 4, leaves) == []
    assert m.consistency_proof(4, 4, leaves) == []


def test_verify_inclusion_bounds() -> None:
    leaves = _hashes(6)
    r = m.root(leaves)
    proof = m.inclusion_proof(2, 6, leaves)
    m.verify_inclusion(leaves[2], 2, 6, proof, r)
    cases = [
        ((leaves[2], 6, 6, proof, r), "outside"),
        ((leaves[2], 2, 0, proof, r), "empty tree"),
        ((leaves[2], 2, 6, [*proof, proof[0]], r), "exactly"),
        ((leaves[2], 2, 6, proof[:-1], r), "exactly"),
        ((leaves[2], 2, 6, [*proof[:-1], proof[-1][:31]], r), "32"),
        ((leaves[2][:16], 2, 6, proof, r), "32"),
        ((leaves[2], 2, 6, proof, r[:31]), "32"),
        ((leaves[3], 2, 6, proof, r), "root"),
    ]
    for args, reason in cases:
        with pytest.raises(LedgerIntegrityError, match=reason):
            m.verify_inclusion(*args)


def test_verify_consistency_bounds() -> None:
    leaves = _hashes(9)
    r5, r9 = m.root(leaves, 5), m.root(leaves, 9)
    proof = m.consistency_proof(5, 9, leaves)
    m.verify_consistency(5, 9, r5, r9, proof)
    m.verify_consistency(9, 9, r9, r9, [])
    m.verify_consistency(0, 0, m.EMPTY_ROOT, m.EMPTY_ROOT, [])
    cases = [
        ((9, 5, r9, r5, proof), "shrank"),
        ((5, 9, r5, r9, []), "empty consistency proof"),
        ((0, 9, m.EMPTY_ROOT, r9, []), "proves nothing"),
        ((9, 9, r9, r5, []), "forked"),
        ((9, 9, r9, r9, [r9]), "must be empty"),
        ((0, 0, r5, r5, []), "empty root"),
        ((5, 9, r5, r9, [*proof, r5]), "exactly"),
        ((5, 9, r5, r9, proof[1:]), "exactly"),
        ((5, 9, r5[:31], r9, proof), "32"),
        ((5, 9, r9, r5, proof), "does not verify"),
    ]
    for args, reason in cases:
        with pytest.raises(LedgerIntegrityError, match=reason):
            m.verify_consistency(*args)


# --- attacks on history ---------------------------------------------------------------------------


def test_edited_reordered_or_truncated_history_is_detected() -> None:
    leaves = _hashes(20)
    checkpoint_size, checkpoint_root = 10, m.root(leaves, 10)

    edited = list(leaves)
    edited[3] = m.leaf_hash(b"forged entry")
    swapped = list(leaves)
    swapped[4], swapped[5] = swapped[5], swapped[4]
    for rewritten in (edited, swapped):
        new_root = m.root(rewritten)
        proof = m.consistency_proof(checkpoint_size, 20, rewritten)
        with pytest.raises(LedgerIntegrityError):
            m.verify_consistency(checkpoint_size, 20, checkpoint_root, new_root, proof)

    # Truncation then regrowth to a larger size with different entries: still inconsistent.
    regrown = leaves[:7] + _hashes(13, salt=b"other")
    proof = m.consistency_proof(checkpoint_size, 20, regrown)
    with pytest.raises(LedgerIntegrityError):
        m.verify_consistency(checkpoint_size, 20, checkpoint_root, m.root(regrown), proof)


def test_tampered_stored_node_breaks_proofs() -> None:
    leaves = _hashes(16)
    store, _ = _frontier_store(leaves)
    good_root = m.root(leaves)
    store[(2, 1)] = m.leaf_hash(b"tampered")
    proof = m.inclusion_proof(0, 16, m.NodeMap(store))
    with pytest.raises(LedgerIntegrityError):
        m.verify_inclusion(leaves[0], 0, 16, proof, good_root)


# --- properties -----------------------------------------------------------------------------------

_PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _flip(proof: list[bytes], which: int, bit: int) -> list[bytes]:
    i = which % len(proof)
    b = bit % (8 * m.HASH_SIZE)
    mutated = bytearray(proof[i])
    mutated[b // 8] ^= 1 << (b % 8)
    return [*proof[:i], bytes(mutated), *proof[i + 1 :]]


_BIG = _hashes(700)


def _incl_len(index: int, size: int) -> int:
    return len(m.inclusion_proof(index, size, _BIG))


def _cons_len(old: int, new: int) -> int:
    return len(m.consistency_proof(old, new, _BIG))


def test_root_does_not_bind_the_size() -> None:
    """RFC 6962 roots do not commit to the tree size, which is why checkpoints sign it.

    The root of 258 leaves is also the root of a 257-"leaf" tree whose last leaf hash is the node
    over leaves 256 and 257, so a proof can verify against a wrong size of the same shape. Sizes
    must only ever come from a signed checkpoint, never from the proof's sender.
    """
    leaves = _hashes(258)
    fake = [*leaves[:256], m.node_hash(leaves[256], leaves[257])]
    assert m.root(leaves) == m.root(fake)
    proof = m.consistency_proof(1, 258, leaves)
    m.verify_consistency(1, 257, leaves[0], m.root(leaves), proof)


@_PROPS
@given(size=st.integers(1, 300), data=st.data())
def test_inclusion_property(size: int, data: st.DataObject) -> None:
    leaves = _hashes(size)
    r = m.root(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = m.inclusion_proof(index, size, leaves)
    m.verify_inclusion(leaves[index], index, size, proof, r)

    if proof:
        which, bit = data.draw(st.integers(0, 10**6)), data.draw(st.integers(0, 10**6))
        with pytest.raises(LedgerIntegrityError):
            m.verify_inclusion(leaves[index], index, size, _flip(proof, which, bit), r)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(LedgerIntegrityError):
        m.verify_inclusion(_flip([leaves[index]], 0, bit)[0], index, size, proof, r)
    with pytest.raises(LedgerIntegrityError):
        m.verify_inclusion(leaves[index], index, size, proof, _flip([r], 0, bit)[0])
    wrong_index = data.draw(st.integers(0, size + 3).filter(lambda i: i != index))
    with pytest.raises(LedgerIntegrityError):
        m.verify_inclusion(leaves[index], wrong_index, size, proof, r)
    # See test_root_does_not_bind_the_size: a wrong size is caught whenever its proof shape differs.
    wrong_size = data.draw(st.integers(0, 2 * size + 3).filter(lambda s: s != size))
    if index >= wrong_size or _incl_len(index, wrong_size) != len(proof):
        with pytest.raises(LedgerIntegrityError):
            m.verify_inclusion(leaves[index], index, wrong_size, proof, r)


@_PROPS
@given(new_size=st.integers(2, 300), data=st.data())
def test_consistency_property(new_size: int, data: st.DataObject) -> None:
    leaves = _hashes(new_size)
    old_size = data.draw(st.integers(1, new_size - 1))
    old_root, new_root = m.root(leaves, old_size), m.root(leaves)
    proof = m.consistency_proof(old_size, new_size, leaves)
    m.verify_consistency(old_size, new_size, old_root, new_root, proof)

    which, bit = data.draw(st.integers(0, 10**6)), data.draw(st.integers(0, 10**6))
    with pytest.raises(LedgerIntegrityError):
        m.verify_consistency(old_size, new_size, old_root, new_root, _flip(proof, which, bit))
    with pytest.raises(LedgerIntegrityError):
        m.verify_consistency(old_size, new_size, _flip([old_root], 0, bit)[0], new_root, proof)
    with pytest.raises(LedgerIntegrityError):
        m.verify_consistency(old_size, new_size, old_root, _flip([new_root], 0, bit)[0], proof)
    with pytest.raises(LedgerIntegrityError):
        m.verify_consistency(old_size, new_size, new_root, old_root, proof)
    wrong_old = data.draw(st.integers(0, new_size + 3).filter(lambda s: s != old_size))
    with pytest.raises(LedgerIntegrityError):
        m.verify_consistency(wrong_old, new_size, old_root, new_root, proof)
    wrong_new = data.draw(st.integers(0, 2 * new_size + 3).filter(lambda s: s != new_size))
    if wrong_new <= old_size or _cons_len(old_size, wrong_new) != len(proof):
        with pytest.raises(LedgerIntegrityError):
            m.verify_consistency(old_size, wrong_new, old_root, new_root, proof)


@_PROPS
@given(size=st.integers(0, 300), data=st.data())
def test_frontier_store_agrees_with_leaflist(size: int, data: st.DataObject) -> None:
    leaves = _hashes(size)
    store, frontier = _frontier_store(leaves)
    source = m.LeafList(leaves)
    assert [store[k] for k in m.frontier_ids(size)] == frontier
    assert m.root_from_frontier(frontier, size) == m.root(leaves) == m.root(m.NodeMap(store), size)
    for (level, index), h in store.items():
        assert source.node(level, index) == h
    if size:
        index = data.draw(st.integers(0, size - 1))
        assert m.inclusion_proof(index, size, m.NodeMap(store)) == m.inclusion_proof(
            index, size, source
        )
        old = data.draw(st.integers(0, size))
        assert m.consistency_proof(old, size, m.NodeMap(store)) == m.consistency_proof(
            old, size, leaves
        )
        # Every prefix root is reachable from the same store: a checkpoint at any older size.
        assert m.root(m.NodeMap(store), old) == m.root(leaves, old)
