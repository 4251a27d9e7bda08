"""The wire schema: every request body the team server accepts, as pydantic models.

One module for both ends: the server (:mod:`chainproof.api`) validates requests with these models
and the client (:mod:`chainproof.client`) builds its requests from them, so a field cannot exist
on one side only. Names use the record grammar of :mod:`chainproof.records.names` (a name that
the service would refuse is refused here, with the same message). Every string, list and
integer is bounded, and every JSON value a caller may shape freely (step parameters,
environment, code revision) has a depth and size limit.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from chainproof.errors import ChainproofError
from chainproof.records.assets import AssetKind
from chainproof.records.names import (
    MAX_DESCRIPTION,
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    MAX_VERSION,
    check_kind,
    check_name,
    check_text,
)
from chainproof.service import StepSubmission, StoredOutput

#: Largest JSON body the server parses (blobs have their own limit).
MAX_JSON_BODY = 2 * 1024 * 1024
#: Largest log position or size a caller may name.
MAX_SEQ = 2**62
#: Deepest nesting of a free-form JSON value (step parameters, environment, code revision).
MAX_JSON_DEPTH = 32


def _name(value: str) -> str:
    return check_name(value)


def _namespace(value: str) -> str:
    return check_name(value, what="namespace")


def _kind(value: str) -> str:
    return check_kind(value)


#: An asset, model or identity name (the one grammar; see records/names.py).
Name = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_name)]
Namespace = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_namespace)]
Kind = Annotated[str, Field(min_length=1, max_length=63), AfterValidator(_kind)]
#: A reference (``[ns/]name@version``, ``model@alias``), a digest, a media type, a time.
Ref = Annotated[str, Field(min_length=1, max_length=300)]
def _text(value: str) -> str:
    try:
        return check_text(value, what="text", limit=10_000)
    except ChainproofError as exc:  # a validation error (422) naming the field
        raise ValueError(exc.message) from None


#: Free text (reasons, command words, errors): printable, newlines and tabs allowed, no other
#: control characters (no terminal escape sequences in what auditors are shown).
Text = Annotated[str, Field(max_length=10_000), AfterValidator(_text)]
Receipts = Annotated[list[Annotated[str, Field(max_length=300)]],
                     Field(default_factory=list, max_length=10_000)]


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """Refuse lone surrogates (UTF-8, the database and the log cannot hold them) and values
    nested deeper than :data:`MAX_JSON_DEPTH`."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where}: nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where}: text is not valid Unicode (a lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, where, depth + 1)
            _check_json(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_json(item, where, depth + 1)


class Body(BaseModel):
    """Every request body: unknown fields refused, strings encodable, nesting bounded."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _valid_text(self) -> Body:
        _check_json(self.model_dump(mode="python"), "body")
        return self


class OutputBody(Body):
    kind: AssetKind
    name: Name
    namespace: Namespace | None = None
    digest: Ref
    size: int = Field(ge=0, le=MAX_SEQ)
    is_directory: bool = False
    media_type: Ref = "application/octet-stream"


class StepBody(Body):
    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    kind: Kind
    namespace: Namespace = "default"
    inputs: list[Ref] = Field(default_factory=list, max_length=10_000)
    outputs: list[OutputBody] = Field(default_factory=list, max_length=10_000)
    command: list[Text] = Field(default_factory=list, max_length=1_000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    started_at: Ref
    ended_at: Ref
    environment: dict[str, Any] = Field(default_factory=dict)
    code_revision: dict[str, Any] = Field(default_factory=dict)
    error: Text | None = None

    def submission(self) -> StepSubmission:
        return StepSubmission(
            id=self.id, kind=self.kind, namespace=self.namespace, inputs=tuple(self.inputs),
            outputs=tuple(StoredOutput(o.kind, o.name, o.namespace, o.digest, o.size,
                                       o.is_directory, o.media_type) for o in self.outputs),
            command=tuple(self.command), parameters=self.parameters,
            started_at=self.started_at, ended_at=self.ended_at, environment=self.environment,
            code_revision=self.code_revision, error=self.error)

    @classmethod
    def of(cls, sub: StepSubmission) -> StepBody:
        return cls(id=sub.id, kind=sub.kind, namespace=sub.namespace, inputs=list(sub.inputs),
                   outputs=[OutputBody(kind=o.kind, name=o.name, namespace=o.namespace,
                                       digest=o.digest, size=o.size,
                                       is_directory=o.is_directory, media_type=o.media_type)
                            for o in sub.outputs],
                   command=list(sub.command), parameters=sub.parameters,
                   started_at=sub.started_at, ended_at=sub.ended_at,
                   environment=sub.environment, code_revision=sub.code_revision,
                   error=sub.error)


class PreparedStepBody(Body):
    step: StepBody
    receipts: Receipts


class SignedStepBody(Body):
    step: StepBody
    envelope: Text | None = None
    receipts: Receipts


class AssetBody(Body):
    namespace: Namespace = "default"
    name: Name
    kind: AssetKind
    digest: Ref
    is_directory: bool = False
    media_type: Ref = "application/octet-stream"
    receipts: Receipts


class IdentityBody(Body):
    name: Name
    kind: Annotated[str, Field(pattern="^(person|service)$")] = "person"


class KeyBody(Body):
    identity: Name
    public_pem: Annotated[str, Field(max_length=20_000)]
    reason: Text = "rotated"


class RevokeBody(Body):
    reason: Text
    compromised: bool = False


class RoleBody(Body):
    identity: Name
    role: Annotated[str, Field(min_length=1, max_length=32)]
    namespace: Annotated[str, Field(min_length=1, max_length=128)]  # a name or a glob


class TokenBody(Body):
    identity: Name
    expires_hours: int = Field(default=24 * 30, ge=1, le=24 * 366)


class ModeBody(Body):
    mode: Annotated[str, Field(pattern="^(governed|experiment)$")]


class DocumentBody(Body):
    document: Annotated[str, Field(max_length=1_000_000)]


class ModelBody(Body):
    model: Ref


class ModelVersionBody(Body):
    """Either ``asset`` (an existing model asset version) or ``digest`` (uploaded bytes, which
    become a model asset version named ``asset_name``, by default the model's name)."""

    model: Ref
    asset: Ref | None = None
    digest: Ref | None = None
    asset_name: Name | None = None
    media_type: Ref = "application/octet-stream"
    is_directory: bool = False
    receipts: Receipts

    @model_validator(mode="after")
    def _one_source(self) -> ModelVersionBody:
        if (self.asset is None) == (self.digest is None):
            raise ValueError("give exactly one of 'asset' (NAME@VERSION) and 'digest' "
                             "(uploaded bytes)")
        return self


class AliasBody(Body):
    model: Ref
    version: int = Field(ge=1, le=MAX_VERSION)
    alias: Name


class TagBody(Body):
    """A tag (``key`` → ``value``) of a registered model, or of its ``version``."""

    model: Ref
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    key: Annotated[str, Field(max_length=MAX_TAG_KEY)]
    value: Annotated[str, Field(max_length=MAX_TAG_VALUE)]


class DescriptionBody(Body):
    """The description of a registered model, or of its ``version`` (empty: removed)."""

    model: Ref
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)]


class ForceBody(AliasBody):
    reason: Text
    envelope: Text | None = None


class ReviewBody(Body):
    decision: Annotated[str, Field(pattern="^(approve|reject)$")]
    reason: Text | None = None
    envelope: Text | None = None


class ExecuteBody(Body):
    auto: bool = False
    envelope: Text | None = None


class WitnessBody(Body):
    witness_notes: list[Annotated[str, Field(max_length=100_000)]] = Field(
        default_factory=list, max_length=10_000)


class DeploymentBody(Body):
    model: Ref
    alias: Name
    version: int = Field(ge=1, le=MAX_VERSION)
    digest: Ref
    decision: Ref | None = None
    where: Text
