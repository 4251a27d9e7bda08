"""One-transaction model registration from bytes (``register_model_file`` /
``register_model_stored``) and the read permission on aliases, embedded, on both backends.

Every refused change must leave the asset, model and log tables as they were (a refusal adds
exactly one ``access.denied`` entry and nothing else)."""

from __future__ import annotations

from pathlib import Path

import pytest
from attacks import log_entries_since, overwrite_blob
from pipeline_fixtures import NS, act_as, model_bytes
from sqlalchemy import text

import chainproof.registry.operations as registry_ops
from chainproof.errors import (
    BadInputError,
    ConflictError,
    DigestMismatchError,
    InvalidNameError,
    NotFoundError,
    PermissionDeniedError,
)
from chainproof.ledger import audit
from chainproof.records.assets import AssetKind
from chainproof.service import Chainproof

MODEL = f"{NS}/fraud-review"
WRITE_TABLES = ("assets", "asset_versions", "models", "model_versions", "checkpoints")


def snapshot(cp: Chainproof) -> dict[str, int]:
    """Row counts of the tables a registration writes, and the log size."""
    with cp.engine.connect() as conn:
        counts = {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                  for t in WRITE_TABLES}
        counts["log"] = int(conn.execute(text("SELECT size FROM log_head")).scalar_one())
    return counts



def only_denial_written(cp: Chainproof, before: dict[str, int], identity: str,
                        permission: str, namespace: str = NS) -> None:
    """The refusal left every table as it was, bar one logged ``access.denied`` entry."""
    after = snapshot(cp)
    assert after["log"] == before["log"] + 1
    assert after["checkpoints"] == before["checkpoints"] + 1  # the denial's own checkpoint
    assert {k: v for k, v in after.items() if k not in ("log", "checkpoints")} == \
        {k: v for k, v in before.items() if k not in ("log", "checkpoints")}
    [entry] = log_entries_since(cp, before["log"])
    assert entry["action"] == "access.denied"
    assert entry["detail"]["identity"] == identity
    assert (entry["detail"]["permission"], entry["detail"]["namespace"]) == (permission, namespace)


def audit_ok(cp: Chainproof) -> None:
    verifier = audit.load_log_verifier(cp.settings.log_public_path, cp.settings.origin)
    with cp.session() as session:
        audit.verify_log(session, verifier)


@pytest.fixture()
def trainer(cp: Chainproof, tmp_path: Path) -> Chainproof:
    """An identity holding only ``trainer`` in the warehouse namespace, with MODEL created."""
    svc = act_as(cp, "svc-trainer", tmp_path, ("trainer",))
    svc.create_model(MODEL)
    return svc


def write_model(tmp_path: Path, tag: str) -> Path:
    path = tmp_path / f"model-{tag}.pkl"
    path.write_bytes(model_bytes(tag))
    return path


# --- registering a file ---------------------------------------------------------------------------


def test_register_file_is_one_transaction_two_entries_one_checkpoint(
        cp: Chainproof, trainer: Chainproof, tmp_path: Path) -> None:
    """Bytes stored, a model asset version added and pinned: two entries, one checkpoint."""
    model = write_model(tmp_path, "a")
    before = snapshot(cp)
    result = trainer.register_model_file(MODEL, model)
    assert (result.model, result.version, result.asset_created) == (MODEL, 1, True)
    asset = result.asset
    assert (asset.ref, asset.kind, asset.namespace) == (f"{NS}/fraud-review@1", AssetKind.MODEL,
                                                        NS)
    assert asset.size == model.stat().st_size and asset.created_by == "svc-trainer"
    assert cp.store.read_bytes(asset.digest) == model.read_bytes()
    after = snapshot(cp)
    assert after["log"] == before["log"] + 2
    assert after["checkpoints"] == before["checkpoints"] + 1
    assert after["asset_versions"] == before["asset_versions"] + 1
    assert after["model_versions"] == before["model_versions"] + 1
    added, pinned = log_entries_since(cp, before["log"])
    assert added["action"] == "asset.version.add" and pinned["action"] == "registry.version.add"
    assert added["actor"] == pinned["actor"] == "svc-trainer"
    assert pinned["detail"]["asset"] == f"{NS}/fraud-review@1"
    assert pinned["detail"]["digest"] == added["detail"]["digest"] == asset.digest
    [listed] = cp.model_versions(MODEL)["versions"]
    assert (listed["asset"], listed["digest"]) == (f"{NS}/fraud-review@1", asset.digest)
    audit_ok(cp)


def test_same_bytes_again_reuse_the_asset_version_but_add_a_model_version(
        cp: Chainproof, trainer: Chainproof, tmp_path: Path) -> None:
    first = trainer.register_model_file(MODEL, write_model(tmp_path, "a"))
    before = snapshot(cp)
    copy = tmp_path / "elsewhere.pkl"
    copy.write_bytes(model_bytes("a"))
    again = trainer.register_model_file(MODEL, copy)
    assert (again.version, again.asset_created) == (2, False)
    assert again.asset == first.asset
    after = snapshot(cp)
    assert after["log"] == before["log"] + 1  # only the model version
    assert after["asset_versions"] == before["asset_versions"]
    [entry] = log_entries_since(cp, before["log"])
    assert entry["action"] == "registry.version.add"
    other = trainer.register_model_file(MODEL, write_model(tmp_path, "b"))
    assert (other.version, other.asset.version, other.asset_created) == (3, 2, True)
    versions = cp.model_versions(MODEL)["versions"]
    assert [v["asset"] for v in versions] == [f"{NS}/fraud-review@{n}" for n in (1, 1, 2)]
    audit_ok(cp)


def test_asset_name_media_type_and_directory(cp: Chainproof, trainer: Chainproof,
                                             tmp_path: Path) -> None:
    named = trainer.register_model_file(MODEL, write_model(tmp_path, "a"),
                                        asset_name="fraud-weights", media_type="application/x-pkl")
    assert named.asset.ref == f"{NS}/fraud-weights@1"
    assert named.asset.media_type == "application/x-pkl"
    folder = tmp_path / "saved-model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "data").write_bytes(b"weights!")
    tree = trainer.register_model_file(MODEL, folder)
    assert tree.version == 2 and tree.asset.is_directory and tree.asset.size == 13
    assert tree.asset.ref == f"{NS}/fraud-review@1"
    materialized = cp.materialize(tree.asset, tmp_path / "out")
    assert (materialized / "variables" / "data").read_bytes() == b"weights!"
    audit_ok(cp)


def test_register_stored_rehashes_the_uploaded_bytes(cp: Chainproof, trainer: Chainproof) -> None:
    digest = cp.store.put_bytes(b"uploaded model")
    result = trainer.register_model_stored(MODEL, digest=digest, asset_name="uploaded",
                                           proven={digest})
    assert (result.version, result.asset.ref, result.asset.size) == (1, f"{NS}/uploaded@1", 14)
    assert result.asset.media_type == "application/octet-stream"
    audit_ok(cp)


def test_register_stored_swapped_or_absent_blob_writes_nothing(cp: Chainproof,
                                                               trainer: Chainproof) -> None:
    """An attacker with store access swaps the bytes between upload and registration."""
    digest = cp.store.put_bytes(b"the reviewed model")
    overwrite_blob(cp.store, digest, b"a backdoored model")
    before = snapshot(cp)
    with pytest.raises(DigestMismatchError):
        trainer.register_model_stored(MODEL, digest=digest, proven={digest})
    with pytest.raises(BadInputError, match="no blob"):
        trainer.register_model_stored(MODEL, digest="sha256:" + "ab" * 32)
    with pytest.raises(BadInputError):
        trainer.register_model_stored(MODEL, digest="blake3:" + "ab" * 32)
    assert snapshot(cp) == before


def test_failure_after_the_asset_version_rolls_both_back(
        cp: Chainproof, trainer: Chainproof, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between adding the asset version and pinning it leaves neither."""
    def crash(*_args: object, **_kwargs: object) -> int:
        raise ConflictError("simulated failure while pinning")

    monkeypatch.setattr(registry_ops, "_pin", crash)
    before = snapshot(cp)
    with pytest.raises(ConflictError, match="simulated"):
        trainer.register_model_file(MODEL, write_model(tmp_path, "a"))
    assert snapshot(cp) == before
    monkeypatch.undo()
    assert trainer.register_model_file(MODEL, write_model(tmp_path, "a")).version == 1
    audit_ok(cp)


@pytest.mark.parametrize("asset_name", ["../fraud-review", "other/x", "evil\x00", "\x7f"])
def test_asset_name_cannot_escape_the_namespace(cp: Chainproof, trainer: Chainproof,
                                                tmp_path: Path, asset_name: str) -> None:
    model = write_model(tmp_path, "a")
    before = snapshot(cp)
    with pytest.raises(InvalidNameError):
        trainer.register_model_file(MODEL, model, asset_name=asset_name)
    assert snapshot(cp) == before


def test_asset_name_of_a_dataset_is_refused(cp: Chainproof, trainer: Chainproof,
                                            tmp_path: Path) -> None:
    """Registering model bytes under a dataset's name must not add a version to the dataset."""
    (tmp_path / "orders.csv").write_text("amount\n1\n")
    cp.add(tmp_path / "orders.csv", kind="dataset", name="orders", namespace=NS)
    before = snapshot(cp)
    with pytest.raises(ConflictError, match="is a dataset"):
        trainer.register_model_file(MODEL, write_model(tmp_path, "a"), asset_name="orders")
    assert snapshot(cp) == before


def test_unregistered_model_writes_nothing(cp: Chainproof, trainer: Chainproof,
                                           tmp_path: Path) -> None:
    before = snapshot(cp)
    with pytest.raises(NotFoundError, match="no registered model"):
        trainer.register_model_file(f"{NS}/ghost", write_model(tmp_path, "a"))
    assert snapshot(cp) == before


# --- who may register ----------------------------------------------------------------------------


@pytest.mark.parametrize(("roles", "namespace"), [
    (("reader",), NS),
    (("data-writer", "evaluator", "approver", "deployer"), NS),
    (("trainer",), "sandbox"),
    (("trainer", "admin"), "sandbox"),
])
def test_register_needs_write_model_in_the_models_namespace(
        cp: Chainproof, trainer: Chainproof, tmp_path: Path, roles: tuple[str, ...],
        namespace: str) -> None:
    """Any role but trainer here, or trainer elsewhere: refused, logged, nothing written."""
    intruder = act_as(cp, "svc-intruder", tmp_path, roles, namespace)
    model = write_model(tmp_path, "evil")
    stored = cp.store.put_bytes(b"evil uploaded bytes")
    for attempt in (lambda: intruder.register_model_file(MODEL, model),
                    lambda: intruder.register_model_file(MODEL, model, asset_name="evil"),
                    lambda: intruder.register_model_stored(MODEL, digest=stored)):
        before = snapshot(cp)
        with pytest.raises(PermissionDeniedError, match="write:model"):
            attempt()
        only_denial_written(cp, before, "svc-intruder", "write:model")
    assert cp.model_versions(MODEL)["versions"] == []
    audit_ok(cp)


def test_outsider_cannot_probe_the_store_through_register_stored(
        cp: Chainproof, trainer: Chainproof, tmp_path: Path) -> None:
    outsider = act_as(cp, "svc-outsider", tmp_path, ("reader",), "sandbox")
    before = snapshot(cp)
    with pytest.raises(PermissionDeniedError):
        outsider.register_model_stored(MODEL, digest="sha256:" + "ab" * 32)
    only_denial_written(cp, before, "svc-outsider", "write:model")


def test_outsider_cannot_probe_model_names_through_register_file(
        cp: Chainproof, trainer: Chainproof, tmp_path: Path) -> None:
    outsider = act_as(cp, "svc-outsider", tmp_path, ("reader",), "sandbox")
    before = snapshot(cp)
    with pytest.raises(PermissionDeniedError):
        outsider.register_model_file(f"{NS}/not-a-model", write_model(tmp_path, "x"))
    only_denial_written(cp, before, "svc-outsider", "write:model")


# --- reading an alias -----------------------------------------------------------------------------


def test_resolve_alias_needs_read_in_the_models_namespace(cp: Chainproof, trainer: Chainproof,
                                                          tmp_path: Path) -> None:
    """Outsiders (a role elsewhere, or none) are refused and logged, even for names that do not
    exist; a reader of the namespace gets the target."""
    registered = trainer.register_model_file(MODEL, write_model(tmp_path, "a"))
    cp.set_alias(MODEL, registered.version, "staging")
    outsider = act_as(cp, "svc-outsider", tmp_path, ("admin", "trainer"), "sandbox")
    nobody = act_as(cp, "svc-nobody", tmp_path)
    for who, name in ((outsider, "svc-outsider"), (nobody, "svc-nobody")):
        for model, alias in ((MODEL, "staging"), (MODEL, "no-such-alias"),
                             (f"{NS}/no-such-model", "staging")):
            before = snapshot(cp)
            with pytest.raises(PermissionDeniedError, match="needs permission read"):
                who.resolve_alias(model, alias)
            only_denial_written(cp, before, name, "read")
    reader = act_as(cp, "svc-reader", tmp_path, ("reader",))
    before = snapshot(cp)
    target = reader.resolve_alias(MODEL, "staging")
    assert snapshot(cp) == before  # a read writes nothing
    assert target["model"] == MODEL and target["alias"] == "staging"
    assert (target["version"], target["digest"]) == (1, registered.asset.digest)
    assert target["asset"] == f"{NS}/fraud-review@1"
    assert target["override"] is False and target["decision"] is None  # a direct move
    assert target["moved_by"] == "tester" and target["moved_at"]
    with pytest.raises(NotFoundError):
        reader.resolve_alias(MODEL, "no-such-alias")
    audit_ok(cp)
