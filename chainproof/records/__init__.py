"""chainproof's typed records: plain data, no I/O. Storage, HTTP and CLI are layers around them."""

from chainproof.records.assets import SOURCE_KINDS, AssetKind, AssetVersion
from chainproof.records.log import Action, LogEntry
from chainproof.records.names import DEFAULT_NAMESPACE, Ref, check_name, parse_ref
from chainproof.records.steps import CodeRevision, EnvironmentRecord, Step, StepStatus

__all__ = [
    "DEFAULT_NAMESPACE",
    "SOURCE_KINDS",
    "Action",
    "AssetKind",
    "AssetVersion",
    "CodeRevision",
    "EnvironmentRecord",
    "LogEntry",
    "Ref",
    "Step",
    "StepStatus",
    "check_name",
    "parse_ref",
]
