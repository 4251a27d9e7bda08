from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785

from chainproof.attest.statement import (
    CHAINPROOF_APPROVAL_V1,
    CHAINPROOF_PROMOTION_DECISION_V1,
    CHAINPROOF_REPORT_V1,
    MODEL_SIGNING_V1,
    SLSA_PROVENANCE_V1,
    STATEMENT_TYPE_V1,
    ResourceDescriptor,
    Statement,
    Subject,
    build_provenance,
    parse_provenance,
)
from chainproof.errors import BadInputError, MalformedFileError, ProvenanceError

H1 = "a" * 64
H2 = "b" * 64
H3 = "c" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _prov(**overrides: Any) -> Statement:
    args: dict[str, Any] = {
        "step_kind": "train",
        "builder_id": "https://chainproof.dev/identity/trainer-bot",
        "invocation_id": "run-42",
        "started_at": T0,
        "finished_at": T0 + timedelta(minutes=5, microseconds=250),
        "command": ["python", "train.py", "--epochs", "3"],
        "parameters": {"epochs": 3, "lr": 0.01},
        "inputs": [("features", H1, "chainproof://features@3"), ("labels", H2, None)],
        "code_revision": {"commit": COMMIT, "uri": "git+https://example.com/repo", "dirty": False},
        "environment": {"python": "3.11.9", "image": "sha256:" + H3},
        "outputs": [("model", H3)],
    }
    args.update(overrides)
    return build_provenance(**args)


def test_provenance_shape_matches_slsa_v1() -> None:
    st = _prov()
    doc = json.loads(st.to_json_bytes())
    assert doc["_type"] == STATEMENT_TYPE_V1
    assert doc["predicateType"] == SLSA_PROVENANCE_V1
    assert doc["subject"] == [{"name": "model", "digest": {"sha256": H3}}]
    bd = doc["predicate"]["buildDefinition"]
    assert bd["buildType"] == "https://chainproof.dev/step/train/v1"
    assert bd["externalParameters"] == {
        "command": ["python", "train.py", "--epochs", "3"],
        "parameters": {"epochs": 3, "lr": 0.01},
    }
    assert bd["internalParameters"] == {"python": "3.11.9", "image": "sha256:" + H3}
    assert bd["resolvedDependencies"] == [
        {"name": "features", "uri": "chainproof://features@3", "digest": {"sha256": H1}},
        {"name": "labels", "digest": {"sha256": H2}},
        {
            "name": "code",
            "uri": "git+https://example.com/repo",
            "digest": {"gitCommit": COMMIT},
            "annotations": {"dirty": False},
        },
    ]
    rd = doc["predicate"]["runDetails"]
    assert rd["builder"] == {"id": "https://chainproof.dev/identity/trainer-bot"}
    assert rd["metadata"] == {
        "invocationId": "run-42",
        "startedOn": "2026-01-02T03:04:05Z",
        "finishedOn": "2026-01-02T03:09:05.000250Z",
    }


def test_canonical_bytes_are_rfc8785_and_stable() -> None:
    a, b = _prov(), _prov()
    assert a.to_json_bytes() == b.to_json_bytes()
    assert a.to_json_bytes() == rfc8785.dumps(json.loads(a.to_json_bytes()))
    assert Statement.from_bytes(a.to_json_bytes()) == a


def test_parse_provenance_roundtrip() -> None:
    view = parse_provenance(Statement.from_bytes(_prov().to_json_bytes()))
    assert view.step_kind == "train"
    assert view.builder_id.endswith("trainer-bot")
    assert view.invocation_id == "run-42"
    assert view.started_on == T0
    assert view.finished_on - view.started_on == timedelta(minutes=5, microseconds=250)
    assert view.command[1] == "train.py"
    assert view.parameters == {"epochs": 3, "lr": 0.01}
    assert [(i.name, i.sha256, i.uri) for i in view.inputs] == [
        ("features", H1, "chainproof://features@3"),
        ("labels", H2, None),
    ]
    assert view.code_revision is not None
    assert view.code_revision.commit == COMMIT
    assert view.code_revision.annotations == {"dirty": False}
    assert view.environment == {"python": "3.11.9", "image": "sha256:" + H3}
    assert view.outputs == (("model", H3),)


def test_provenance_without_code_or_environment() -> None:
    view = parse_provenance(_prov(code_revision=None, environment=None, inputs=[]))
    assert view.code_revision is None and view.environment is None and view.inputs == ()


def test_non_utc_times_are_normalized() -> None:
    plus2 = timezone(timedelta(hours=2))
    st = _prov(
        started_at=T0.astimezone(plus2),
        finished_at=(T0 + timedelta(seconds=1)).astimezone(plus2),
    )
    meta = st.predicate["runDetails"]["metadata"]
    assert meta["startedOn"] == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"step_kind": "Train!"}, "invalid step kind"),
        ({"builder_id": "alice"}, "not a URI"),
        ({"invocation_id": ""}, "empty invocation id"),
        ({"outputs": []}, "at least one output"),
        ({"outputs": [("m", "sha256:" + H1)]}, "not a sha256 digest"),
        ({"outputs": [("m", H1.upper())]}, "not a sha256 digest"),
        ({"outputs": [("m", H1), ("m", H2)]}, "duplicate output"),
        ({"inputs": [("x", "abc", None)]}, "not a sha256 digest"),
        ({"code_revision": {"commit": "abc"}}, "not a git commit"),
        ({"started_at": datetime(2026, 1, 1)}, "naive datetime"),
        ({"finished_at": T0 - timedelta(seconds=1)}, "before started_at"),
        ({"parameters": {"x": object()}}, "canonical JSON"),
        ({"command": "python train.py"}, "list of strings"),
    ],
)
def test_build_provenance_rejects_bad_input(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        _prov(**overrides)


def _doc(**overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "_type": STATEMENT_TYPE_V1,
        "subject": [{"name": "m", "digest": {"sha256": H1}}],
        "predicateType": CHAINPROOF_APPROVAL_V1,
        "predicate": {"approved": True},
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "ptype",
    [
        SLSA_PROVENANCE_V1,
        MODEL_SIGNING_V1,
        CHAINPROOF_APPROVAL_V1,
        CHAINPROOF_PROMOTION_DECISION_V1,
        CHAINPROOF_REPORT_V1,
    ],
)
def test_known_predicate_types_parse(ptype: str) -> None:
    assert Statement.from_bytes(_doc(predicateType=ptype)).predicate_type == ptype


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"_type": "https://in-toto.io/Statement/v0.1"}, "not an in-toto Statement v1"),
        ({"subject": []}, "no subjects"),
        ({"subject": [{"name": "m", "digest": {}}]}, "non-empty object"),
        ({"subject": [{"name": "", "digest": {"sha256": H1}}]}, "non-empty string"),
        ({"subject": [{"name": "m", "digest": {"sha256": H1[:-1]}}]}, "64 lowercase hex"),
        ({"subject": [{"name": "m", "digest": {"sha256": H1.upper()}}]}, "lowercase hex"),
        ({"subject": [{"name": "m", "digest": {"sha1": H1}}]}, "40 lowercase hex"),
        ({"subject": [{"name": "m", "digest": {"custom": "xyz"}}]}, "lowercase hex"),
        ({"predicateType": "https://evil.example/approve-everything/v1"}, "unknown predicate"),
        ({"predicateType": 3}, "no predicateType"),
        ({"predicate": []}, "must be a JSON object"),
    ],
)
def test_statement_strict_parsing(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ProvenanceError, match=message):
        Statement.from_bytes(_doc(**overrides))


def test_not_json_and_duplicate_keys_are_malformed() -> None:
    with pytest.raises(MalformedFileError, match="not valid JSON"):
        Statement.from_bytes(b'{"_type": ')
    dup = (
        b'{"_type": "https://in-toto.io/Statement/v1", "predicateType": "%s",'
        b' "predicateType": "%s", "subject": [{"name": "m", "digest": {"sha256": "%s"}}]}'
        % (CHAINPROOF_APPROVAL_V1.encode(), CHAINPROOF_REPORT_V1.encode(), H1.encode())
    )
    with pytest.raises(MalformedFileError, match="duplicate keys"):
        Statement.from_bytes(dup)


def test_parse_provenance_rejects_other_predicates_and_tampering() -> None:
    with pytest.raises(ProvenanceError, match="not SLSA provenance"):
        parse_provenance(Statement.from_bytes(_doc()))
    doc = json.loads(_prov().to_json_bytes())
    doc["predicate"]["buildDefinition"]["buildType"] = "https://evil.example/build/v1"
    with pytest.raises(ProvenanceError, match="not a chainproof step type"):
        parse_provenance(Statement.from_dict(doc))
    doc = json.loads(_prov().to_json_bytes())
    doc["predicate"]["runDetails"]["metadata"]["startedOn"] = "yesterday"
    with pytest.raises(ProvenanceError, match="RFC 3339"):
        parse_provenance(Statement.from_dict(doc))
    doc = json.loads(_prov().to_json_bytes())
    doc["predicate"]["buildDefinition"]["resolvedDependencies"].append({"name": "unpinned"})
    with pytest.raises(ProvenanceError, match="content-addressed"):
        parse_provenance(Statement.from_dict(doc))
    doc = json.loads(_prov().to_json_bytes())
    del doc["predicate"]["runDetails"]["builder"]
    with pytest.raises(ProvenanceError, match="builder"):
        parse_provenance(Statement.from_dict(doc))


def test_resource_descriptor_roundtrip_and_checks() -> None:
    rd = ResourceDescriptor(name="x", uri="s3://b/k", digest={"sha256": H1},
                            media_type="application/x", annotations={"k": 1})
    assert ResourceDescriptor.from_dict(rd.to_dict()) == rd
    with pytest.raises(ProvenanceError, match="name or a uri"):
        ResourceDescriptor.from_dict({"digest": {"sha256": H1}})
    assert Subject.from_dict({"name": "a", "digest": {"sha256": H1}}).digest == {"sha256": H1}


def test_subject_digest_lookup() -> None:
    st = _prov()
    assert st.subject_digest("model") == H3
    with pytest.raises(ProvenanceError, match="no subject"):
        st.subject_digest("other")
