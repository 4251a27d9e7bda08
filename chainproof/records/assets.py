"""Assets and their versions: the behaviour-producing inputs and outputs of an ML pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chainproof.errors import BadInputError


class AssetKind(StrEnum):
    """What an asset is. The kind decides how lineage and ``explain`` present it."""

    DATASET = "dataset"
    LABELS = "labels"
    FEATURES = "features"
    CODE = "code"
    NOTEBOOK = "notebook"
    ENVIRONMENT = "environment"
    MODEL = "model"
    METRICS = "metrics"
    REPORT = "report"
    SCHEMA = "schema"

    @classmethod
    def parse(cls, text: str) -> AssetKind:
        try:
            return cls(text)
        except ValueError:
            raise BadInputError(
                f"unknown asset kind {text!r}",
                hint="use one of: " + ", ".join(k.value for k in cls),
            ) from None


#: Kinds that enter the pipeline from outside (no producing step needed).
SOURCE_KINDS = frozenset({AssetKind.DATASET, AssetKind.LABELS, AssetKind.CODE, AssetKind.NOTEBOOK,
                          AssetKind.ENVIRONMENT, AssetKind.SCHEMA})


@dataclass(frozen=True)
class AssetVersion:
    """One immutable version of an asset, identified by the SHA-256 digest of its bytes (I1)."""

    namespace: str
    name: str
    kind: AssetKind
    version: int
    digest: str  # "sha256:<hex>"; for a directory, the digest of its canonical manifest
    size: int
    media_type: str
    is_directory: bool
    created_at: str  # RFC 3339 UTC
    created_by: str
    producer_step: str | None = None  # id of the step that produced it; None if added directly

    @property
    def ref(self) -> str:
        prefix = "" if self.namespace == "default" else f"{self.namespace}/"
        return f"{prefix}{self.name}@{self.version}"

    @property
    def hexdigest(self) -> str:
        return self.digest.split(":", 1)[1]
