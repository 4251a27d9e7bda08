"""A write transaction: its changes, their audit-log entries and a signed checkpoint commit
together or not at all (I3, I7). Opened by :meth:`chainproof.context.Context.transaction`."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from chainproof.ledger.log import LogAppender
from chainproof.records.log import Action, LogEntry


@dataclass
class Transaction:
    """An open write transaction: the session, and the log appender bound to it.

    ``actor`` is the identity the change is made as; ``time`` the RFC 3339 UTC time every row
    and log entry of the transaction carries."""

    session: Session
    appender: LogAppender
    actor: str
    time: str

    def log(self, action: Action, obj: str, *, digests: dict[str, str] | None = None,
            detail: dict[str, Any] | None = None) -> LogEntry:
        """Append one entry to the audit log (committed with the transaction)."""
        entry = LogEntry(seq=self.appender.size, time=self.time, actor=self.actor,
                         action=action.value, object=obj, digests=digests or {},
                         detail=detail or {})
        self.appender.append(entry)
        return entry


#: Set while a statement is being prepared for a client to sign: every transaction opened then
#: rolls back instead of committing (a prepare call writes nothing).
DRY_RUN: ContextVar[bool] = ContextVar("chainproof_dry_run", default=False)


class Prepared(Exception):
    """Carries the payload a client must sign out of a transaction that is then rolled back
    (None: the operation had nothing to sign)."""

    def __init__(self, payload: bytes | None) -> None:
        super().__init__("prepared")
        self.payload = payload
