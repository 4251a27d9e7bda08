"""The context every capability works in: database, object store, checkpoint key and caller.

A :class:`Context` is what the capabilities (``access``, ``catalog``, ``lineage``,
``provenance``, ``registry``, ``serve``) take instead of the operations facade: it opens
transactions and read sessions, and checks the caller's permissions. It holds no operation of
its own, so nothing below :mod:`chainproof.service` needs to import the facade (imports flow one
way: records <- primitives <- context <- capabilities <- operations <- CLI / HTTP API).

A :class:`Transaction` is one write: its changes, their audit-log entries and a signed checkpoint
commit together or not at all (I3, I7).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from chainproof.access import Permission, grants, receipts
from chainproof.attest import Signer
from chainproof.db import engine as db_engine
from chainproof.errors import (
    BadInputError,
    DatabaseError,
    PermissionDeniedError,
    WorkspaceError,
)
from chainproof.identities import load_signer
from chainproof.ledger import audit, witness
from chainproof.ledger.log import open_appender
from chainproof.records.log import Action, LogEntry
from chainproof.records.names import check_name
from chainproof.records.steps import now
from chainproof.store import ObjectStore
from chainproof.transaction import DRY_RUN, Prepared, Transaction
from chainproof.workspace import Settings

#: The write transaction in progress in this context, keyed by its connection pool.
_ACTIVE: ContextVar[tuple[Any, Session] | None] = ContextVar("chainproof_transaction",
                                                             default=None)


class RefusalBudget:
    """How many ``access.denied`` entries one identity may add to the log per minute, in this
    process (``CHAINPROOF_DENIALS_PER_MINUTE``, default 60; 0 logs none).

    Every refusal is still refused; past the budget it is counted instead of logged, and the
    next logged refusal of that identity carries the count (``suppressed_before``), the way
    syslog says "last message repeated N times". Without it a token with no role could grow
    the append-only log, and hold its lock, as fast as it can send requests."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self.clock = time.monotonic
        self._lock = threading.Lock()
        # (database, actor) -> (window start, logged in it, held back since the last logged)
        self._spent: dict[str, tuple[float, int, int]] = {}

    @staticmethod
    def limit() -> int:
        try:
            return max(0, int(os.environ.get("CHAINPROOF_DENIALS_PER_MINUTE", "60")))
        except ValueError:
            return 60

    def admit(self, actor: str) -> int | None:
        """None if this refusal of ``actor`` (a log and an identity) goes unlogged; else how
        many were held back before it."""
        with self._lock:
            moment = self.clock()
            start, logged, held = self._spent.get(actor, (moment, 0, 0))
            if moment - start >= self.WINDOW:
                start, logged = moment, 0
            if logged >= self.limit():
                self._spent[actor] = (start, logged, held + 1)
                return None
            self._spent[actor] = (start, logged + 1, 0)
            if len(self._spent) > 100_000:  # bounded memory: forget finished windows
                self._spent = {a: v for a, v in self._spent.items()
                               if moment - v[0] < self.WINDOW or v[2]}
            return held


#: The process's refusal budget (the server's workers each keep their own).
REFUSAL_BUDGET = RefusalBudget()


class Context:
    """Database, object store, checkpoint key and acting identity (see the module docstring).

    Cheap to copy: :meth:`acting_as` shares the engine's pool and the loaded checkpoint key."""

    def __init__(self, settings: Settings, engine: Engine, store: ObjectStore) -> None:
        self.settings = settings
        self.engine = engine
        self.write_engine = engine.execution_options(**{db_engine.WRITE_OPTION: True})
        self.store = store
        self.identity = check_name(settings.identity, what="identity")
        self._checkpoint_signer: audit.LogSigner | None = None
        self._signer: Signer | None = None
        self._receipt_key: bytes | None = None

    def acting_as(self, identity: str, *, signing_key_path: Path | None = None) -> Context:
        """The same database, store and checkpoint key, acting as ``identity``."""
        acting = copy.copy(self)
        acting.settings = dataclasses.replace(self.settings, identity=identity,
                                              signing_key_path=signing_key_path)
        acting.identity = check_name(identity, what="identity")
        acting._checkpoint_signer = self.checkpoint_signer
        acting._receipt_key = self._receipt_key
        acting._signer = None
        return acting

    # --- keys ------------------------------------------------------------------------------------

    @property
    def checkpoint_signer(self) -> audit.LogSigner:
        """The log's checkpoint key (loaded once)."""
        if self._checkpoint_signer is None:
            self._checkpoint_signer = audit.load_log_signer(self.settings.log_key_path,
                                                            self.settings.origin)
        return self._checkpoint_signer

    @property
    def receipt_key(self) -> bytes:
        """The key of upload receipts (:mod:`chainproof.access.receipts`), derived from the
        log's checkpoint key, which every replica of the server holds."""
        if self._receipt_key is None:
            try:
                secret = self.settings.log_key_path.read_bytes()
            except OSError as exc:
                raise WorkspaceError(f"cannot read the log's key {self.settings.log_key_path}: "
                                     f"{exc}") from None
            self._receipt_key = receipts.receipt_key(secret)
        return self._receipt_key

    @property
    def signer(self) -> Signer:
        """This identity's signing key (from a file it controls; never from the database)."""
        if self._signer is None:
            if self.settings.signing_key_path is None:
                raise WorkspaceError(f"no signing key configured for {self.identity}",
                                     hint="set CHAINPROOF_SIGNING_KEY")
            self._signer = load_signer(self.settings.signing_key_path)
        return self._signer

    # --- sessions and transactions ---------------------------------------------------------------

    @contextmanager
    def transaction(self, actor: str | None = None) -> Iterator[Transaction]:
        """One write transaction: changes, their log entries and a signed checkpoint commit
        together or not at all. A permission refusal rolls the change back and is itself
        logged (``access.denied``). Database failures become DatabaseError / BadInputError."""
        signer = self.checkpoint_signer  # fail before writing if the key is unusable
        published: str | None = None
        try:
            with Session(self.write_engine, expire_on_commit=False) as session, \
                    session.begin():
                appender = open_appender(session)
                tx = Transaction(session, appender, actor or self.identity, now())
                token = _ACTIVE.set((self.engine.pool, session))
                try:
                    yield tx
                finally:
                    _ACTIVE.reset(token)
                if DRY_RUN.get():
                    raise Prepared(None)  # rolls the transaction back
                if appender.appended:
                    appender.flush_head()
                    note = signer.sign(appender.size, appender.root())
                    appender.record_checkpoint(note, tx.time)
                    published = note
        except PermissionDeniedError as exc:
            # The refused change was rolled back; the refusal itself is evidence (I3, I6).
            detail = getattr(exc, "detail", None)
            if detail is not None:
                self._log_refusal(detail, actor or self.identity)
            raise
        except OperationalError as exc:
            raise DatabaseError(f"database error: {exc.orig}",
                                hint="check that the database is reachable; nothing was "
                                     "changed") from None
        except DataError as exc:
            raise BadInputError(f"the database refused a value: {exc.orig}",
                                hint="remove NUL characters and out-of-range values; nothing "
                                     "was changed") from None
        except PoolTimeoutError:
            raise DatabaseError("no database connection became free in time",
                                hint="the server is overloaded; retry (nothing was changed)"
                                ) from None
        if published is not None and witness.witness_targets():
            # After the commit, outside the log-head lock: the operator's witnesses
            # (CHAINPROOF_WITNESSES) keep every signed checkpoint where the database's owner
            # cannot rewrite it. A witness that fails does not undo the committed change.
            witness.publish_checkpoint(published)

    def _log_refusal(self, detail: dict[str, Any], actor: str) -> None:
        held = REFUSAL_BUDGET.admit(f"{self.engine.url}#{actor}")
        if held is None:
            return  # over this identity's budget: refused, counted, not logged
        if held:
            detail = {**detail, "suppressed_before": held}
        signer = self.checkpoint_signer
        with Session(self.write_engine) as session, session.begin():
            appender = open_appender(session)
            time = now()
            appender.append(LogEntry(seq=appender.size, time=time, actor=actor,
                                     action=Action.ACCESS_DENIED.value,
                                     object=f"namespace:{detail['namespace']}",
                                     detail=detail))
            appender.flush_head()
            appender.record_checkpoint(signer.sign(appender.size, appender.root()), time)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads. Inside a write transaction on the same database it is that
        transaction's own session: an operation never needs a second pooled connection while
        it holds the log-head lock (which, under load, would deadlock the pool), and its reads
        see its own writes."""
        active = _ACTIVE.get()
        if active is not None and active[0] is self.engine.pool:
            yield active[1]
            return
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @staticmethod
    def in_transaction() -> bool:
        return _ACTIVE.get() is not None

    # --- permissions (the one authority: chainproof.access.grants) ------------------------------

    def allowed(self, permission: Permission, namespace: str) -> bool:
        with self.session() as session:
            return grants.allowed(session, self.identity, permission, namespace)

    def require(self, session: Session, permission: Permission, namespace: str,
                what: str) -> None:
        """Inside a transaction: raise PermissionDeniedError (logged as the transaction ends)
        unless the identity holds ``permission`` in ``namespace``."""
        grants.require(session, self.identity, permission, namespace, what)

    def check(self, permission: Permission, namespace: str, what: str) -> None:
        """Refuse (and log the refusal) unless the identity holds ``permission`` there."""
        with self.session() as session:
            if grants.allowed(session, self.identity, permission, namespace):
                return
            if _ACTIVE.get() is not None:
                # Inside a transaction: raise; the transaction logs the refusal as it ends.
                grants.require(session, self.identity, permission, namespace, what)
        with self.transaction() as tx:
            grants.require(tx.session, self.identity, permission, namespace, what)

    def check_read(self, namespace: str, what: str) -> None:
        """Refuse (and log) a read outside the identity's grants."""
        self.check(Permission.READ, namespace, what)
