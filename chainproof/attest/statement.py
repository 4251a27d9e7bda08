"""in-toto Statement v1 and SLSA Provenance v1 as typed, I/O-free records.

Written against the specs (in-toto/attestation spec/v1, slsa.dev/spec/v1.0/provenance) rather than
the ``in_toto_attestation`` package: that package round-trips through protobuf ``Struct`` (which
turns every integer into a float and does not canonicalize), and chainproof signs canonical RFC
8785 bytes so the same statement always hashes the same.

Every semantic problem in a statement raises :class:`ProvenanceError` (a signed document that
does not say what a provenance link must say is a failed check); bytes that are not JSON at all
raise :class:`MalformedFileError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785

from chainproof.errors import BadInputError, MalformedFileError, ProvenanceError
from chainproof.records.names import KIND_PATTERN

__all__ = [
    "CHAINPROOF_APPROVAL_V1",
    "CHAINPROOF_PREDICATE_TYPES",
    "CHAINPROOF_PROMOTION_DECISION_V1",
    "CHAINPROOF_REPORT_V1",
    "KNOWN_PREDICATE_TYPES",
    "MODEL_SIGNING_V1",
    "SLSA_PROVENANCE_V1",
    "STATEMENT_TYPE_V1",
    "CodeRevision",
    "InputRef",
    "ProvenanceView",
    "ResourceDescriptor",
    "Statement",
    "Subject",
    "build_provenance",
    "parse_provenance",
    "step_build_type",
]

STATEMENT_TYPE_V1 = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
MODEL_SIGNING_V1 = "https://model_signing/signature/v1.0"
CHAINPROOF_APPROVAL_V1 = "https://chainproof.dev/approval/v1"
CHAINPROOF_PROMOTION_DECISION_V1 = "https://chainproof.dev/promotion-decision/v1"
CHAINPROOF_REPORT_V1 = "https://chainproof.dev/report/v1"
CHAINPROOF_PREDICATE_TYPES = frozenset(
    {CHAINPROOF_APPROVAL_V1, CHAINPROOF_PROMOTION_DECISION_V1, CHAINPROOF_REPORT_V1}
)
KNOWN_PREDICATE_TYPES = frozenset(
    {SLSA_PROVENANCE_V1, MODEL_SIGNING_V1} | CHAINPROOF_PREDICATE_TYPES
)

_BUILD_TYPE_PREFIX = "https://chainproof.dev/step/"
_BUILD_TYPE_RE = re.compile(rf"^https://chainproof\.dev/step/({KIND_PATTERN})/v1$")
_STEP_KIND_RE = re.compile(rf"^{KIND_PATTERN}$")
_HEX_RE = re.compile(r"^[0-9a-f]+$")
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
# Hex lengths of the in-toto digest algorithms we can check; others must still be lowercase hex.
_DIGEST_HEX_LENGTHS: dict[str, tuple[int, ...]] = {
    "sha256": (64,),
    "sha224": (56,),
    "sha384": (96,),
    "sha512": (128,),
    "sha512_224": (56,),
    "sha512_256": (64,),
    "sha3_224": (56,),
    "sha3_256": (64,),
    "sha3_384": (96,),
    "sha3_512": (128,),
    "sha1": (40,),
    "md5": (32,),
    "gitCommit": (40, 64),
    "gitTree": (40, 64),
    "gitBlob": (40, 64),
}


def _check_digest_set(digest: object, where: str) -> dict[str, str]:
    if not isinstance(digest, Mapping) or not digest:
        raise ProvenanceError(
            f"{where}: digest must be a non-empty object of algorithm -> hex",
            hint='e.g. {"sha256": "<64 lowercase hex>"}',
        )
    out: dict[str, str] = {}
    for alg, value in digest.items():
        if not isinstance(alg, str) or not alg or not isinstance(value, str):
            raise ProvenanceError(
                f"{where}: digest entry {alg!r} is not a string pair",
                hint="digest values are lowercase hex strings",
            )
        lengths = _DIGEST_HEX_LENGTHS.get(alg)
        if not _HEX_RE.match(value) or (lengths is not None and len(value) not in lengths):
            expected = f"{' or '.join(map(str, lengths))} " if lengths else ""
            raise ProvenanceError(
                f"{where}: digest {alg} is not {expected}lowercase hex: {value[:80]!r}",
                hint="recompute the digest; truncated or uppercase digests are refused",
            )
        out[alg] = value
    return out


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers that disagree on which duplicate wins is a classic signature-bypass trick.
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise MalformedFileError(
            f"JSON object has duplicate keys {dupes}",
            hint="the document was hand-edited or crafted; re-export it from its source",
        )
    return dict(pairs)


def loads_strict(data: bytes | str, *, what: str) -> Any:
    """``json.loads`` that refuses duplicate keys and reports ``what`` failed to parse."""
    try:
        return json.loads(data, object_pairs_hook=_reject_duplicate_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedFileError(
            f"{what} is not valid JSON ({exc})",
            hint="the file is truncated or not the expected format",
        ) from None


@dataclass(frozen=True)
class Subject:
    """An in-toto subject: a named artifact and its digests (plain hex, as in-toto requires)."""

    name: str
    digest: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": dict(self.digest)}

    @classmethod
    def from_dict(cls, data: object, where: str = "subject") -> Subject:
        if not isinstance(data, Mapping):
            raise ProvenanceError(f"{where} must be an object", hint="{name, digest}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise ProvenanceError(
                f"{where}: name must be a non-empty string", hint="every subject is named"
            )
        return cls(name, _check_digest_set(data.get("digest"), f"{where} {name!r}"))


@dataclass(frozen=True)
class ResourceDescriptor:
    """An in-toto ResourceDescriptor (the subset chainproof writes and reads)."""

    name: str | None = None
    uri: str | None = None
    digest: Mapping[str, str] = field(default_factory=dict)
    download_location: str | None = None
    media_type: str | None = None
    annotations: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        if self.uri is not None:
            out["uri"] = self.uri
        if self.digest:
            out["digest"] = dict(self.digest)
        if self.download_location is not None:
            out["downloadLocation"] = self.download_location
        if self.media_type is not None:
            out["mediaType"] = self.media_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_dict(cls, data: object, where: str = "resource") -> ResourceDescriptor:
        if not isinstance(data, Mapping):
            raise ProvenanceError(f"{where} must be an object", hint="{name|uri, digest, ...}")
        name, uri = data.get("name"), data.get("uri")
        if name is None and uri is None:
            raise ProvenanceError(
                f"{where}: needs a name or a uri", hint="identify every resolved dependency"
            )
        for key in ("name", "uri", "downloadLocation", "mediaType"):
            if key in data and not isinstance(data[key], str):
                raise ProvenanceError(f"{where}: {key} must be a string", hint="fix the producer")
        annotations = data.get("annotations", {})
        if not isinstance(annotations, Mapping):
            raise ProvenanceError(f"{where}: annotations must be an object", hint="fix it")
        digest: dict[str, str] = {}
        if "digest" in data:
            digest = _check_digest_set(data["digest"], f"{where} {name or uri!r}")
        return cls(
            name=name,
            uri=uri,
            digest=digest,
            download_location=data.get("downloadLocation"),
            media_type=data.get("mediaType"),
            annotations=dict(annotations),
        )


@dataclass(frozen=True)
class Statement:
    """An in-toto Statement v1. ``to_json_bytes`` is canonical (RFC 8785), so it is the thing to
    sign and to hash; equal statements always give equal bytes."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE_V1,
            "subject": [s.to_dict() for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def to_json_bytes(self) -> bytes:
        try:
            return rfc8785.dumps(self.to_dict())
        except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
            raise BadInputError(
                f"statement cannot be serialized as canonical JSON ({exc})",
                hint="predicate values must be JSON types: str, int, float, bool, None, list, dict",
            ) from exc

    def subject_digest(self, name: str, algorithm: str = "sha256") -> str:
        for s in self.subjects:
            if s.name == name and algorithm in s.digest:
                return s.digest[algorithm]
        raise ProvenanceError(
            f"statement has no subject {name!r} with a {algorithm} digest",
            hint=f"subjects are {[s.name for s in self.subjects]}",
        )

    @classmethod
    def from_dict(cls, data: object) -> Statement:
        if not isinstance(data, Mapping):
            raise ProvenanceError(
                "in-toto statement must be a JSON object", hint="expected {_type, subject, ...}"
            )
        if data.get("_type") != STATEMENT_TYPE_V1:
            raise ProvenanceError(
                f"not an in-toto Statement v1: _type is {data.get('_type')!r}",
                hint=f"expected _type {STATEMENT_TYPE_V1!r}",
            )
        subjects = data.get("subject")
        if not isinstance(subjects, list) or not subjects:
            raise ProvenanceError(
                "in-toto statement has no subjects",
                hint="a statement must name at least one artifact it is about",
            )
        parsed = tuple(Subject.from_dict(s, f"subject[{i}]") for i, s in enumerate(subjects))
        predicate_type = data.get("predicateType")
        if not isinstance(predicate_type, str):
            raise ProvenanceError(
                "in-toto statement has no predicateType string",
                hint=f"one of {sorted(KNOWN_PREDICATE_TYPES)}",
            )
        if predicate_type not in KNOWN_PREDICATE_TYPES:
            raise ProvenanceError(
                f"unknown predicate type {predicate_type!r}",
                hint=f"chainproof accepts only {sorted(KNOWN_PREDICATE_TYPES)}",
            )
        predicate = data.get("predicate", {})
        if not isinstance(predicate, Mapping):
            raise ProvenanceError("predicate must be a JSON object", hint="fix the producer")
        return cls(parsed, predicate_type, dict(predicate))

    @classmethod
    def from_bytes(cls, data: bytes) -> Statement:
        return cls.from_dict(loads_strict(data, what="in-toto statement"))


# --- SLSA Provenance v1 -------------------------------------------------------------------------


def _rfc3339(ts: datetime, what: str) -> str:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise BadInputError(
            f"{what} is a naive datetime", hint="pass a timezone-aware datetime (e.g. UTC)"
        )
    utc = ts.astimezone(UTC)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return utc.strftime(fmt)


def _parse_rfc3339(value: object, what: str) -> datetime:
    if not isinstance(value, str) or not value.endswith("Z"):
        raise ProvenanceError(
            f"provenance {what} is not an RFC 3339 UTC timestamp: {value!r}",
            hint="expected e.g. 2026-01-01T12:00:00Z",
        )
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        raise ProvenanceError(
            f"provenance {what} is not an RFC 3339 timestamp: {value!r}",
            hint="expected e.g. 2026-01-01T12:00:00Z",
        ) from None


def step_build_type(step_kind: str) -> str:
    """The SLSA buildType URI for a chainproof step kind."""
    if not _STEP_KIND_RE.match(step_kind):
        raise BadInputError(
            f"invalid step kind {step_kind!r}",
            hint="use lowercase letters, digits and '-', e.g. 'train' or 'feature-gen'",
        )
    return f"{_BUILD_TYPE_PREFIX}{step_kind}/v1"


def _check_sha256(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or not _HEX_RE.match(value):
        raise BadInputError(
            f"{what}: {value!r} is not a sha256 digest (64 lowercase hex)",
            hint="pass plain hex here, without the 'sha256:' prefix",
        )
    return value


@dataclass(frozen=True)
class InputRef:
    name: str
    sha256: str
    uri: str | None


@dataclass(frozen=True)
class CodeRevision:
    commit: str
    uri: str | None = None
    name: str = "code"
    annotations: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProvenanceView:
    """Typed accessors over a SLSA v1 provenance statement produced by :func:`build_provenance`."""

    step_kind: str
    build_type: str
    builder_id: str
    invocation_id: str
    started_on: datetime
    finished_on: datetime
    command: tuple[str, ...]
    parameters: Mapping[str, Any]
    environment: Mapping[str, Any] | None
    inputs: tuple[InputRef, ...]
    code_revision: CodeRevision | None
    outputs: tuple[tuple[str, str], ...]


def build_provenance(
    *,
    step_kind: str,
    builder_id: str,
    invocation_id: str,
    started_at: datetime,
    finished_at: datetime,
    command: list[str],
    parameters: dict[str, Any],
    inputs: list[tuple[str, str, str | None]],
    code_revision: dict[str, Any] | None,
    environment: dict[str, Any] | None,
    outputs: list[tuple[str, str]],
) -> Statement:
    """A SLSA Provenance v1 statement for one chainproof step.

    ``inputs`` are (name, sha256 hex, uri); ``outputs`` are (name, sha256 hex) and become the
    subjects. ``code_revision`` is ``{"commit": <git sha>, "uri"?: str, "name"?: str, ...}``;
    any other keys are kept as annotations of the code dependency.
    """
    build_type = step_build_type(step_kind)
    if not _URI_RE.match(builder_id):
        raise BadInputError(
            f"builder id {builder_id!r} is not a URI",
            hint="use an identity URI such as 'https://chainproof.dev/identity/alice'",
        )
    if not invocation_id:
        raise BadInputError("empty invocation id", hint="pass the run's unique id")
    if not outputs:
        raise BadInputError(
            "a provenance statement needs at least one output",
            hint="a step that produced nothing has nothing to attest",
        )
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise BadInputError("command must be a list of strings", hint="pass argv, not a string")
    started, finished = _rfc3339(started_at, "started_at"), _rfc3339(finished_at, "finished_at")
    if finished_at < started_at:
        raise BadInputError(
            f"finished_at {finished} is before started_at {started}",
            hint="pass the step's real start and end times",
        )
    names = [n for n, _ in outputs]
    if len(set(names)) != len(names):
        raise BadInputError(f"duplicate output names in {names}", hint="name each output once")
    subjects = tuple(
        Subject(name, {"sha256": _check_sha256(digest, f"output {name!r}")})
        for name, digest in outputs
    )
    deps: list[dict[str, Any]] = []
    for name, digest, uri in inputs:
        deps.append(
            ResourceDescriptor(
                name=name, uri=uri, digest={"sha256": _check_sha256(digest, f"input {name!r}")}
            ).to_dict()
        )
    if code_revision is not None:
        commit = code_revision.get("commit")
        if not isinstance(commit, str) or not _HEX_RE.match(commit) or len(commit) not in (40, 64):
            raise BadInputError(
                f"code revision commit {commit!r} is not a git commit id",
                hint="pass the full 40- or 64-hex commit id",
            )
        extra = {k: v for k, v in code_revision.items() if k not in ("commit", "uri", "name")}
        deps.append(
            ResourceDescriptor(
                name=str(code_revision.get("name", "code")),
                uri=code_revision.get("uri"),
                digest={"gitCommit": commit},
                annotations=extra,
            ).to_dict()
        )
    build_definition: dict[str, Any] = {
        "buildType": build_type,
        "externalParameters": {"command": list(command), "parameters": dict(parameters)},
        "resolvedDependencies": deps,
    }
    if environment is not None:
        build_definition["internalParameters"] = dict(environment)
    predicate = {
        "buildDefinition": build_definition,
        "runDetails": {
            "builder": {"id": builder_id},
            "metadata": {
                "invocationId": invocation_id,
                "startedOn": started,
                "finishedOn": finished,
            },
        },
    }
    statement = Statement(subjects, SLSA_PROVENANCE_V1, predicate)
    statement.to_json_bytes()  # fail now, not at signing time, on non-JSON parameters
    return statement


def _get(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise ProvenanceError(
            f"provenance {where}.{key} is missing or not a {kind.__name__}",
            hint="the statement was not produced by chainproof's build_provenance",
        )
    return value


def parse_provenance(statement: Statement) -> ProvenanceView:
    """Check a statement is chainproof SLSA v1 provenance and expose its fields, typed."""
    if statement.predicate_type != SLSA_PROVENANCE_V1:
        raise ProvenanceError(
            f"predicate type is {statement.predicate_type!r}, not SLSA provenance v1",
            hint=f"expected {SLSA_PROVENANCE_V1!r}",
        )
    pred = statement.predicate
    bd = _get(pred, "buildDefinition", Mapping, "predicate")
    rd = _get(pred, "runDetails", Mapping, "predicate")
    build_type = _get(bd, "buildType", str, "buildDefinition")
    match = _BUILD_TYPE_RE.match(build_type)
    if not match:
        raise ProvenanceError(
            f"buildType {build_type!r} is not a chainproof step type",
            hint=f"expected {_BUILD_TYPE_PREFIX}<kind>/v1",
        )
    ext = _get(bd, "externalParameters", Mapping, "buildDefinition")
    command = _get(ext, "command", list, "externalParameters")
    if not all(isinstance(c, str) for c in command):
        raise ProvenanceError("externalParameters.command must be strings", hint="argv list")
    parameters = _get(ext, "parameters", Mapping, "externalParameters")
    environment = bd.get("internalParameters")
    if environment is not None and not isinstance(environment, Mapping):
        raise ProvenanceError("internalParameters must be an object", hint="fix the producer")
    inputs: list[InputRef] = []
    code: CodeRevision | None = None
    deps = bd.get("resolvedDependencies", [])
    if not isinstance(deps, list):
        raise ProvenanceError("resolvedDependencies must be a list", hint="fix the producer")
    for i, raw in enumerate(deps):
        dep = ResourceDescriptor.from_dict(raw, f"resolvedDependencies[{i}]")
        if "gitCommit" in dep.digest:
            if code is not None:
                raise ProvenanceError(
                    "provenance lists more than one code revision", hint="one step, one commit"
                )
            code = CodeRevision(
                dep.digest["gitCommit"], dep.uri, dep.name or "code", dict(dep.annotations)
            )
        elif "sha256" in dep.digest and dep.name:
            inputs.append(InputRef(dep.name, dep.digest["sha256"], dep.uri))
        else:
            raise ProvenanceError(
                f"resolvedDependencies[{i}] has neither a named sha256 nor a gitCommit digest",
                hint="every input must be content-addressed",
            )
    builder = _get(rd, "builder", Mapping, "runDetails")
    meta = _get(rd, "metadata", Mapping, "runDetails")
    started = _parse_rfc3339(meta.get("startedOn"), "startedOn")
    finished = _parse_rfc3339(meta.get("finishedOn"), "finishedOn")
    if finished < started:
        raise ProvenanceError(
            "provenance finishedOn is before startedOn", hint="the statement is inconsistent"
        )
    outputs = []
    for s in statement.subjects:
        if "sha256" not in s.digest:
            raise ProvenanceError(f"subject {s.name!r} has no sha256 digest", hint="fix it")
        outputs.append((s.name, s.digest["sha256"]))
    return ProvenanceView(
        step_kind=match.group(1),
        build_type=build_type,
        builder_id=_get(builder, "id", str, "runDetails.builder"),
        invocation_id=_get(meta, "invocationId", str, "runDetails.metadata"),
        started_on=started,
        finished_on=finished,
        command=tuple(command),
        parameters=dict(parameters),
        environment=dict(environment) if environment is not None else None,
        inputs=tuple(inputs),
        code_revision=code,
        outputs=tuple(outputs),
    )
