"""Agreement with OpenSSF model_signing 1.x: resources, ordering, root digest, shards."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from chainproof.digest import (
    MODEL_SIGNING_GIT_IGNORES,
    Manifest,
    ManifestEntry,
    digest_path,
    hash_file,
    model_signing_root_digest,
    model_signing_shard_resources,
)

ms_hashing = pytest.importorskip("model_signing.hashing")
ms_signing = pytest.importorskip("model_signing._signing.signing")


def _model_signing_payload(config: Any, root: Path) -> dict[str, Any]:
    """The in-toto statement model_signing would sign for ``root`` under ``config``."""
    manifest = config.hash(root)
    from google.protobuf import json_format

    statement = ms_signing.Payload(manifest).statement
    return json_format.MessageToDict(statement.pb)


def _resources_and_root(payload: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    return payload["predicate"]["resources"], payload["subject"][0]["digest"]["sha256"]


TRICKY_FILES = {
    "a-c": b"1",
    "a/b": b"2",
    "a/b-c/d": b"3",
    "a.b": b"4",
    "B": b"5",
    "é/ü": b"6",
    "\U0001f600.bin": b"7",
    "weights:v1.bin": os.urandom(3000),
    "zero": b"",
    "sub/zero": b"",
    "deep/er/and/deeper/x.json": b"{}",
    ".hidden": b"h",
}


@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
def test_resources_and_root_match_model_signing(make_tree, algorithm: str) -> None:
    root = make_tree(TRICKY_FILES)
    config = ms_hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)
    config.use_file_serialization(hashing_algorithm=algorithm)
    expected, expected_root = _resources_and_root(_model_signing_payload(config, root))

    manifest = digest_path(root, algorithm).manifest
    assert manifest is not None
    ours = manifest.to_model_signing_resources()
    assert ours == expected
    # Same key order as model_signing's Payload builds them (protobuf re-sorts them when signed).
    assert all(list(r) == ["name", "algorithm", "digest"] for r in ours)
    assert manifest.model_signing_root_digest() == expected_root
    assert model_signing_root_digest(ours) == expected_root


def test_model_signing_order_differs_from_manifest_order(make_tree) -> None:
    manifest = digest_path(make_tree({"a-c": b"1", "a/b": b"2"})).manifest
    assert manifest is not None
    assert [e.path for e in manifest.entries] == ["a-c", "a/b"]
    assert [r["name"] for r in manifest.to_model_signing_resources()] == ["a/b", "a-c"]


def test_default_git_ignores_match_model_signing(make_tree) -> None:
    root = make_tree({
        "model.bin": b"m", ".git/HEAD": b"h", ".gitignore": b"*", ".github/ci.yml": b"c",
        ".gitattributes": b"a", "sub/.gitignore": b"kept", "model.sig": b"s",
    })
    config = ms_hashing.Config().set_ignored_paths(paths=["model.sig"])  # git paths by default
    expected, expected_root = _resources_and_root(_model_signing_payload(config, root))
    manifest = digest_path(root, ignore=[*MODEL_SIGNING_GIT_IGNORES, "model.sig"]).manifest
    assert manifest is not None
    assert manifest.to_model_signing_resources() == expected
    assert manifest.model_signing_root_digest() == expected_root


def test_symlinked_file_matches_model_signing_allow_symlinks(make_tree) -> None:
    root = make_tree({"real.bin": b"r"})
    (root / "alias.bin").symlink_to("real.bin")
    config = ms_hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)
    config.set_allow_symlinks(True)
    expected, expected_root = _resources_and_root(_model_signing_payload(config, root))
    manifest = digest_path(root).manifest
    assert manifest is not None
    assert manifest.to_model_signing_resources() == expected
    assert manifest.model_signing_root_digest() == expected_root


def test_shard_resources_match_model_signing(make_tree) -> None:
    files = {"big.bin": os.urandom(10_000), "a/b": os.urandom(2500), "a-c": b"x" * 1000,
             "zero": b"", "exact": b"y" * 2000}
    root = make_tree(files)
    config = ms_hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)
    config.use_shard_serialization(shard_size=1000)
    expected, expected_root = _resources_and_root(_model_signing_payload(config, root))
    for workers in (1, 3):
        ours = model_signing_shard_resources(root, shard_size=1000, workers=workers)
        assert ours == expected
        assert model_signing_root_digest(ours) == expected_root
    assert not any(r["name"].startswith("zero:") for r in ours)  # empty files have no shard


def test_manifest_from_entries_matches_model_signing_payload() -> None:
    # The signing code builds resources from a stored manifest, with no file system at hand.
    d1, d2 = "11" * 32, "22" * 32
    manifest = Manifest.build("sha256", [ManifestEntry("x/y", 1, d1), ManifestEntry("x-y", 2, d2)])
    resources = manifest.to_model_signing_resources()
    assert resources == [
        {"name": "x/y", "algorithm": "sha256", "digest": d1},
        {"name": "x-y", "algorithm": "sha256", "digest": d2},
    ]
    import hashlib

    assert manifest.model_signing_root_digest() == hashlib.sha256(
        bytes.fromhex(d1) + bytes.fromhex(d2)).hexdigest()


def test_signatures_from_released_model_signing_versions(shared_vectors) -> None:
    corpus = shared_vectors("model-signing")
    checked = 0
    for folder in sorted(corpus.iterdir()):
        sig = folder / "model.sig"
        if not sig.is_file():
            continue
        bundle = json.loads(sig.read_text())
        envelope = bundle.get("dsseEnvelope")
        if envelope is None:
            continue
        statement = json.loads(base64.b64decode(envelope["payload"]))
        predicate = statement.get("predicate", {})
        serialization = predicate.get("serialization", {})
        if serialization.get("method") != "files" or "resources" not in predicate:
            continue  # pre-1.0 layouts carry no resources list
        expected_root = statement["subject"][0]["digest"]["sha256"]
        theirs = predicate["resources"]
        if [r["name"] for r in theirs] == ["."]:
            # A single-file model: model_signing names the only resource ".".
            only = folder / statement["subject"][0]["name"]
            assert hash_file(only, serialization["hash_type"]) == theirs[0]["digest"]
            assert model_signing_root_digest(theirs) == expected_root
            checked += 1
            continue
        # The corpus README: "ignore-me" was excluded from signing (older versions did not
        # record their ignore_paths in the signature).
        ignore = [*serialization.get("ignore_paths", []), *MODEL_SIGNING_GIT_IGNORES,
                  "model.sig", "ignore-me"]
        manifest = digest_path(folder, serialization["hash_type"], ignore=ignore).manifest
        assert manifest is not None
        ours = manifest.to_model_signing_resources()
        assert ours == [{"name": r["name"], "algorithm": r["algorithm"], "digest": r["digest"]}
                        for r in theirs], folder.name
        assert manifest.model_signing_root_digest() == expected_root
        checked += 1
    assert checked >= 4, "no model_signing v1 signature found in the corpus"
