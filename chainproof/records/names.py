"""Names and references: the rules every asset, model, identity and namespace name follows.

A name is what a person types (``fraud-labels``); a reference points at one version of it
(``warehouse/fraud-labels@3``) or, for registered models, at an alias (``fraud-review@production``).
Names never contain ``/`` (it separates the namespace), ``@`` (it separates the version), ``..``
or control characters, so a name is always safe to show, to log and to use in a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chainproof.errors import InvalidNameError, InvalidReferenceError

DEFAULT_NAMESPACE = "default"
MAX_VERSION = 2**31 - 1  # versions are 32-bit integers in every database

MAX_NAME = 128
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
#: Step and report kinds: they become part of the SLSA buildType URI
#: (``https://chainproof.dev/step/<kind>/v1``), so lowercase letters, digits and '-', ≤ 63.
KIND_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_KIND_RE = re.compile(KIND_PATTERN)


def check_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is a valid name, else raise :class:`InvalidNameError` saying why."""
    if isinstance(name, str) and _NAME_RE.fullmatch(name) and ".." not in name:
        return name  # the common case, in one regex; the checks below explain a refusal
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"{what} is empty", hint="use letters, digits, '.', '_', '+', '-'")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidNameError(
            f"{what} {name!r} contains a control character",
            hint="names may hold only letters, digits, '.', '_', '+' and '-'",
        )
    if "/" in name or "\\" in name:
        raise InvalidNameError(
            f"{what} {name!r} contains a path separator",
            hint="'/' separates a namespace from a name; pass the namespace with --namespace",
        )
    if ".." in name:
        raise InvalidNameError(f"{what} {name!r} contains '..'", hint="remove the '..'")
    if not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"{what} {name!r} is not a valid name",
            hint="start with a letter or digit; then letters, digits, '.', '_', '+', '-'; "
            "at most 128 characters",
        )
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias name: a name (see :func:`check_name`) that is
    not all digits (``model@1`` always means version 1, so an alias ``1`` could never be
    resolved). Raises :class:`InvalidNameError`."""
    check_name(alias, what="alias")
    if is_version(alias):
        raise InvalidNameError(f"alias {alias!r} is a number: MODEL@{alias} means version "
                               f"{alias.lstrip('0') or '0'}, so it could never name the alias",
                               hint="use a word: production, staging, candidate…")
    return alias


#: Tags on registered models and model versions (as MLflow's): keys are short printable labels;
#: keys under ``chainproof.`` are reserved (the description is the tag DESCRIPTION_TAG).
MAX_TAG_KEY = 250
MAX_TAG_VALUE = 5_000
MAX_DESCRIPTION = 20_000
RESERVED_TAG_PREFIX = "chainproof."
DESCRIPTION_TAG = "chainproof.description"
_TAG_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/ -]{0,249}")


def check_tag_key(key: str) -> str:
    """Return ``key`` if it is a valid user tag key, else raise :class:`InvalidNameError`:
    1-250 characters, letters, digits, '_', '.', ':', '/', '-' and spaces, starting with a
    letter, digit or '_', not under the reserved ``chainproof.`` prefix."""
    if not isinstance(key, str) or not _TAG_KEY_RE.fullmatch(key) or key != key.strip():
        raise InvalidNameError(
            f"tag key {key!r} is not a valid key",
            hint="1-250 characters: letters, digits, '_', '.', ':', '/', '-' and inner spaces, "
                 "starting with a letter, digit or '_'")
    if key.lower().startswith(RESERVED_TAG_PREFIX):
        raise InvalidNameError(f"tag key {key!r} is reserved (keys under "
                               f"{RESERVED_TAG_PREFIX!r} are chainproof's own)",
                               hint="use another prefix; set a description with "
                                    "`registry describe`")
    return key


#: Bidirectional overrides and isolates: they reorder what a terminal shows (U+202E makes
#: "txt.exe" read backwards), so free text shown to auditors may not carry them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unprintable(c: str) -> bool:
    """C0 controls but newline and tab, DEL, C1 controls (U+0080-U+009F, some terminals take
    U+009B as an escape), lone surrogates and bidirectional overrides."""
    o = ord(c)
    return ((o < 32 and c not in "\n\t") or 127 <= o <= 159 or 0xD800 <= o <= 0xDFFF
            or c in _BIDI_CONTROLS)


def printable(text: str) -> str:
    """``text`` with every control character but newline and tab written as an escape
    (``\\x1b``), so that it passes :func:`check_text` (for messages chainproof itself writes,
    e.g. a failed step's exception)."""
    return "".join(c if not _unprintable(c) else f"\\x{ord(c):02x}" if ord(c) < 256
                   else f"\\u{ord(c):04x}" for c in text)


def check_text(value: str, *, what: str, limit: int) -> str:
    """Return ``value`` if it is printable text of at most ``limit`` characters (newlines and
    tabs allowed; no C0/C1 controls, DEL, lone surrogates or bidirectional overrides), else
    raise :class:`InvalidNameError` saying why."""
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} is not text")
    if len(value) > limit:
        raise InvalidNameError(f"{what} is {len(value)} characters long; at most {limit}",
                               hint="shorten it (keep long documents as assets)")
    bad = next((c for c in value if _unprintable(c)), None)
    if bad is not None:
        raise InvalidNameError(f"{what} contains the control character {bad!r}",
                               hint="use printable text (newlines and tabs are fine)")
    return value


def is_version(text: str) -> bool:
    """Whether ``text`` (after the '@') is a version number: ASCII digits only ('²' and other
    Unicode digits are not; they are refused as bad input, never parsed)."""
    return text.isascii() and text.isdigit()


def check_kind(kind: str, *, what: str = "step kind") -> str:
    """Return ``kind`` if it is a valid step or report kind (lowercase letters, digits and '-',
    starting with a letter or digit, at most 63 characters), else raise InvalidNameError."""
    if isinstance(kind, str) and _KIND_RE.fullmatch(kind):
        return kind
    raise InvalidNameError(f"{what} {kind!r} is not valid",
                           hint="use lowercase letters, digits and '-', at most 63 characters "
                                "(e.g. train, evaluate, feature-build)")


@dataclass(frozen=True)
class Ref:
    """A parsed ``[namespace/]name[@version|@alias]`` reference."""

    namespace: str
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        prefix = "" if self.namespace == DEFAULT_NAMESPACE else f"{self.namespace}/"
        if self.version is not None:
            return f"{prefix}{self.name}@{self.version}"
        if self.alias is not None:
            return f"{prefix}{self.name}@{self.alias}"
        return f"{prefix}{self.name}"


def parse_ref(text: str, *, namespace: str | None = None, allow_alias: bool = False) -> Ref:
    """Parse a reference; ``namespace`` is used when the text names none.

    ``name@3`` pins version 3; ``name`` means the latest version; ``name@production`` is an
    alias (only where ``allow_alias``).
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidReferenceError("empty reference",
                                    hint="write NAME@VERSION, e.g. fraud-labels@2")
    body, at, tail = text.partition("@")
    if "@" in tail:
        raise InvalidReferenceError(f"reference {text!r} has more than one '@'")
    ns, slash, name = body.rpartition("/")
    if slash:
        if "/" in ns:
            raise InvalidReferenceError(
                f"reference {text!r} has more than one '/'",
                hint="write NAMESPACE/NAME@VERSION",
            )
        check_name(ns, what="namespace")
    else:
        ns = namespace or DEFAULT_NAMESPACE
    check_name(name, what="name")
    if not at:
        return Ref(ns, name)
    if is_version(tail):
        version = int(tail)
        if not 1 <= version <= MAX_VERSION:
            raise InvalidReferenceError(f"reference {text!r}: versions run from 1 to "
                                        f"{MAX_VERSION}")
        return Ref(ns, name, version=version)
    if not allow_alias:
        raise InvalidReferenceError(
            f"reference {text!r}: {tail!r} is not a version number",
            hint="write NAME@VERSION with an integer version, e.g. fraud-labels@2",
        )
    check_name(tail, what="alias")
    return Ref(ns, name, alias=tail)
