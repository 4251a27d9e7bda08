"""Every error chainproof raises, in one place.

Each error says what was wrong, where, and what to do about it (``hint``). The CLI maps the two
families onto exit codes: :class:`VerificationError` (a check that ran and failed: exit 1) and
:class:`BadInputError` (the request itself was wrong or could not be carried out: exit 2). The HTTP
API maps them onto 4xx statuses. Verification never returns ``False``: it raises one of these.
"""

from __future__ import annotations


class ChainproofError(Exception):
    """Base of every chainproof error."""

    exit_code = 2
    http_status = 400

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


# --- the request was wrong, or the environment cannot serve it (exit 2) -------------------------


class BadInputError(ChainproofError):
    """The input (path, name, reference, file contents) is malformed or missing."""


class InvalidNameError(BadInputError):
    """An asset, model, identity or namespace name breaks the naming rules."""


class InvalidReferenceError(BadInputError):
    """A ``NAME@VERSION`` or ``MODEL@ALIAS`` reference is malformed."""


class NotFoundError(BadInputError):
    """A referenced object does not exist."""

    http_status = 404


class ConflictError(BadInputError):
    """The change conflicts with existing state (e.g. an immutable object would change)."""

    http_status = 409


class UnsafePathError(BadInputError):
    """A path is a special file, an escaping symlink, or otherwise refused for hashing/storing."""


class StepFailedError(BadInputError):
    """A recorded step's command or body failed; it was recorded as failed with no outputs.
    ``exit_status`` is the command's own exit status when it ran and failed (the CLI passes it
    through as its own)."""

    exit_status: int | None = None


class WorkspaceError(BadInputError):
    """No workspace, or the workspace/configuration is unusable."""


class DatabaseError(BadInputError):
    """The metadata database is unreachable or at an incompatible migration."""

    http_status = 503


class ServerUnreachableError(BadInputError):
    """The chainproof team server (CHAINPROOF_SERVER) could not be reached."""

    http_status = 503


class StoreError(BadInputError):
    """The object store is unreachable or refused an operation."""

    http_status = 503


class PermissionDeniedError(BadInputError):
    """The acting identity lacks the role required for this action in this namespace."""

    http_status = 403


class AuthenticationError(BadInputError):
    """A token is missing, unknown, expired or revoked."""

    http_status = 401


class TooLargeError(BadInputError):
    """A request body or upload is larger than the server accepts."""

    http_status = 413


class RateLimitedError(BadInputError):
    """A token sent more requests than the server's rate limit allows; retry later."""

    http_status = 429


class MalformedFileError(BadInputError):
    """A file (model, dataset, bundle, envelope) cannot be parsed."""


# --- a check ran and failed (exit 1) -----------------------------------------------------------


class VerificationError(ChainproofError):
    """A verification ran and failed. ``problems`` lists each failed check."""

    exit_code = 1
    http_status = 422

    def __init__(
        self, message: str, *, hint: str | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        text = super().__str__()
        if self.problems:
            text += "".join(f"\n  - {p}" for p in self.problems)
        return text


class DigestMismatchError(VerificationError):
    """Stored bytes do not hash to the digest they are addressed by (I1)."""


class SignatureError(VerificationError):
    """A signature is missing or malformed, by an untrusted or revoked key, or does not verify."""


class LedgerIntegrityError(VerificationError):
    """The audit log, its checkpoints, or the state it should explain do not agree (I3)."""


class ProvenanceError(VerificationError):
    """A provenance chain link fails the trust policy or does not match stored bytes (I2)."""


class PolicyViolationError(VerificationError):
    """A promotion or validation policy rule was not satisfied (I4)."""


class ScanFindingError(VerificationError):
    """A model file scan found callables or structures outside the allowlist."""


class ValidationFailedError(VerificationError):
    """A dataset failed its schema, drift, or label checks."""


# --- verified loading refusals (I5): each its own type, each actionable -------------------------


class LoadRefusedError(VerificationError):
    """A model was not handed out because a check on its promotion or bytes failed."""


class UnapprovedModelError(LoadRefusedError):
    """The alias was not moved by a valid, signed promotion decision."""


class OverrideNotAllowedError(LoadRefusedError):
    """The alias was moved by a break-glass override and the caller did not allow overrides."""


class ScanRequiredError(LoadRefusedError):
    """No passing scan report covers the model's bytes."""
