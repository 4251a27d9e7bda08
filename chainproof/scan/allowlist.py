"""The allowlist of callables a pickle may reference: data (YAML), loading and matching.

The default list ships as ``default_allowlist.yaml`` next to this module. A team extends it with
an extra YAML file of the same shape (``load_allowlist(extra=Path(...))``) or programmatically
(:meth:`Allowlist.extended`). Matching is exact on fully qualified ``module`` and ``name``;
pattern entries apply only where a pattern is written, to names that fully match its regex.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from chainproof.errors import BadInputError, MalformedFileError

_IDENT_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class ExactEntry:
    """``module`` + a set of ``names`` that are safe, with the reason."""

    module: str
    names: frozenset[str]
    why: str
    args_are_globals: tuple[int, ...] = ()
    arg_choices: tuple[tuple[int, tuple[str, ...]], ...] = ()
    #: getattr-like: allowed only as f(<allowlisted global>, "<attr>") where the dotted name
    #: "<global>.<attr>" is itself allowlisted; the call then yields that global.
    attribute_of_allowlisted: bool = False
    #: "class", "function" or "value" (an inert constant such as ``torch.float32``); empty means
    #: inferred from the name (CapWords: class, anything else: function).
    kind: str = ""
    #: argument positions that may hold an allowlisted class (constructors that take a type)
    class_args: tuple[int, ...] = ()
    #: argument positions that may hold one of these allowlisted functions (fully qualified)
    function_args: tuple[tuple[int, frozenset[str]], ...] = ()


KINDS = ("class", "function", "value")


def infer_kind(name: str) -> str:
    """The kind of an allowlisted name without an explicit ``kind``: CapWords names are classes.

    Cython's ``__pyx_unpickle_*`` helpers and every lowercase name count as functions, the
    strictest kind: a function reference may never be handed to another call unless that call
    declares the position (see :class:`CallRules`).
    """
    last = name.rsplit(".", 1)[-1]
    return "class" if last[:1].isupper() else "function"


@dataclass(frozen=True)
class CallRules:
    """What an allowlisted global is and what a call of it may receive (one per name).

    * ``kind``: ``class`` and ``function`` references are callables: they may appear in a call's
      arguments only at a position the callee declares (``class_args`` / ``function_args``), never
      nested in a container handed to a call. ``value`` references (dtypes, singletons) are inert.
    * ``required_class_args``: positions that must be an allowlisted class (``args_are_globals``).
    * ``arg_choices``: positions that must be one of these string constants.
    * ``attribute``: getattr-like (see :attr:`ExactEntry.attribute_of_allowlisted`).
    """

    qualname: str
    kind: str
    class_args: frozenset[int] = frozenset()
    required_class_args: frozenset[int] = frozenset()
    function_args: tuple[tuple[int, frozenset[str]], ...] = ()
    arg_choices: tuple[tuple[int, tuple[str, ...]], ...] = ()
    attribute: bool = False

    def functions_at(self, i: int) -> frozenset[str]:
        for pos, names in self.function_args:
            if pos == i:
                return names
        return frozenset()


@dataclass(frozen=True)
class PatternEntry:
    """A module glob plus a name regex (full match), with exclusions and the reason."""

    module: str
    name_regex: str
    why: str
    exclude_modules: tuple[str, ...] = ()
    exclude_names: frozenset[str] = frozenset()

    def matches(self, module: str, name: str) -> bool:
        if not _glob_match(self.module, module):
            return False
        if any(_glob_match(p, module) for p in self.exclude_modules):
            return False
        if name in self.exclude_names:
            return False
        return re.fullmatch(self.name_regex, name) is not None


def _glob_match(pattern: str, module: str) -> bool:
    """``a.*`` matches any dotted submodule of ``a`` (never ``a`` itself nor ``ab``).

    Other ``*`` (only used in exclusions, e.g. ``sklearn.*.tests.*``) match any run of
    characters, dots included: an exclusion should rather exclude too much than too little.
    """
    if pattern.endswith(".*") and "*" not in pattern[:-2]:
        prefix = pattern[:-1]
        return module.startswith(prefix) and len(module) > len(prefix)
    if "*" in pattern:
        return fnmatch.fnmatchcase(module, pattern)
    return module == pattern


@dataclass(frozen=True)
class Allowlist:
    """Callables a pickle may reference. Build with :func:`load_allowlist`."""

    version: str
    exact: tuple[ExactEntry, ...]
    patterns: tuple[PatternEntry, ...] = ()
    _index: dict[tuple[str, str], ExactEntry] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        for entry in self.exact:
            for name in entry.names:
                self._index.setdefault((entry.module, name), entry)

    def entry(self, module: str, name: str) -> ExactEntry | PatternEntry | None:
        """The entry that allows ``module.name``, or None. Never raises."""
        if not _valid_dotted(module) or not _valid_dotted(name):
            return None
        hit = self._index.get((module, name))
        if hit is not None:
            return hit
        # Dotted names reach attributes of attributes (pickle protocol >= 4 resolves them with
        # getattr chains): patterns never allow them, only an exact entry can.
        if "." in name:
            return None
        for pat in self.patterns:
            if pat.matches(module, name):
                return pat
        return None

    def allows(self, module: str, name: str) -> bool:
        return self.entry(module, name) is not None

    def rules(self, module: str, name: str) -> CallRules | None:
        """The :class:`CallRules` of an allowed ``module.name``, or None if it is not allowed."""
        entry = self.entry(module, name)
        if entry is None:
            return None
        qual = f"{module}.{name}"
        last = name.rsplit(".", 1)[-1]
        # Cython's __pyx_unpickle_X(cls, checksum, state) and scikit-learn's newObj(cls)
        # (``cls.__new__(cls)``) take the class they rebuild as their first argument.
        pyx = last.startswith("__pyx_unpickle_") or last == "newObj"
        if isinstance(entry, PatternEntry):
            # Pattern names are classes, or the class-taking helpers above.
            kind = "function" if pyx else "class"
            return CallRules(qual, kind, frozenset({0}) if pyx else frozenset(),
                             frozenset({0}) if pyx else frozenset())
        required = frozenset(entry.args_are_globals) | (frozenset({0}) if pyx else frozenset())
        return CallRules(
            qual,
            entry.kind or infer_kind(name),
            frozenset(entry.class_args) | required,
            required,
            entry.function_args,
            entry.arg_choices,
            entry.attribute_of_allowlisted,
        )

    def extended(self, other: Allowlist) -> Allowlist:
        """A new allowlist with ``other``'s entries added (versions are joined with ``+``)."""
        version = f"{self.version}+{other.version}" if other.version else self.version
        return Allowlist(
            version=version,
            exact=self.exact + other.exact,
            patterns=self.patterns + other.patterns,
        )


def _valid_dotted(text: str) -> bool:
    return bool(text) and all(_IDENT_PART.match(p) for p in text.split("."))


def _parse(doc: Any, source: str) -> Allowlist:
    if not isinstance(doc, dict):
        raise MalformedFileError(
            f"allowlist {source} is not a YAML mapping",
            hint="start from chainproof/scan/default_allowlist.yaml",
        )
    version = str(doc.get("version", ""))
    exact: list[ExactEntry] = []
    patterns: list[PatternEntry] = []
    for i, raw in enumerate(doc.get("exact") or []):
        where = f"{source}: exact[{i}]"
        if not isinstance(raw, dict):
            raise MalformedFileError(f"{where} is not a mapping", hint="see docs/scanning.md")
        module = raw.get("module")
        names = raw.get("names")
        why = raw.get("why")
        if not isinstance(module, str) or not _valid_dotted(module):
            raise MalformedFileError(
                f"{where}: 'module' must be a dotted Python module name, got {module!r}",
                hint="wildcards belong in 'patterns', not 'exact'",
            )
        if not isinstance(names, list) or not names or not all(
            isinstance(n, str) and _valid_dotted(n) for n in names
        ):
            raise MalformedFileError(
                f"{where}: 'names' must be a non-empty list of attribute names",
                hint="e.g. names: [XGBClassifier, Booster]",
            )
        if not isinstance(why, str) or not why.strip():
            raise MalformedFileError(
                f"{where}: every entry needs a 'why' saying why the callables are safe",
                hint="reviewers read it; 'needed by our model' is not a reason",
            )
        globals_ = tuple(int(x) for x in raw.get("args_are_globals") or [])
        choices_raw = raw.get("arg_choices") or {}
        if not isinstance(choices_raw, dict):
            raise MalformedFileError(f"{where}: 'arg_choices' must be a mapping", hint=None)
        choices = tuple(
            sorted((int(k), tuple(str(v) for v in vals)) for k, vals in choices_raw.items())
        )
        kind = raw.get("kind", "")
        if kind and kind not in KINDS:
            raise MalformedFileError(
                f"{where}: 'kind' must be one of {list(KINDS)}, got {kind!r}", hint=None
            )
        class_args = tuple(int(x) for x in raw.get("class_args") or [])
        fargs_raw = raw.get("function_args") or {}
        if not isinstance(fargs_raw, dict) or not all(
            isinstance(v, list) and all(isinstance(n, str) and _valid_dotted(n) for n in v)
            for v in fargs_raw.values()
        ):
            raise MalformedFileError(
                f"{where}: 'function_args' must map positions to lists of qualified names",
                hint="e.g. function_args: {0: [torch._utils._rebuild_tensor_v2]}",
            )
        fargs = tuple(sorted((int(k), frozenset(v)) for k, v in fargs_raw.items()))
        exact.append(
            ExactEntry(
                module,
                frozenset(names),
                why.strip(),
                globals_,
                choices,
                bool(raw.get("attribute_of_allowlisted", False)),
                kind,
                class_args,
                fargs,
            )
        )
    for i, raw in enumerate(doc.get("patterns") or []):
        where = f"{source}: patterns[{i}]"
        if not isinstance(raw, dict):
            raise MalformedFileError(f"{where} is not a mapping", hint="see docs/scanning.md")
        module = raw.get("module")
        regex = raw.get("name_regex")
        why = raw.get("why")
        if not isinstance(module, str) or not module.endswith(".*") or not _valid_dotted(
            module[:-2]
        ):
            raise MalformedFileError(
                f"{where}: 'module' must look like 'package.*', got {module!r}",
                hint="a pattern covers the submodules of one named package",
            )
        if not isinstance(regex, str) or not regex:
            raise MalformedFileError(f"{where}: 'name_regex' is required", hint=None)
        try:
            re.compile(regex)
        except re.error as exc:
            raise MalformedFileError(f"{where}: bad name_regex: {exc}", hint=None) from exc
        if not isinstance(why, str) or not why.strip():
            raise MalformedFileError(f"{where}: every pattern needs a 'why'", hint=None)
        patterns.append(
            PatternEntry(
                module=module,
                name_regex=regex,
                why=why.strip(),
                exclude_modules=tuple(str(m) for m in raw.get("exclude_modules") or []),
                exclude_names=frozenset(str(n) for n in raw.get("exclude_names") or []),
            )
        )
    return Allowlist(version=version, exact=tuple(exact), patterns=tuple(patterns))


def allowlist_from_yaml(text: str, *, source: str = "<string>") -> Allowlist:
    """Parse an allowlist document (same shape as the shipped default)."""
    # libyaml's safe loader when available: same safety, ~10x faster on the shipped list.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise MalformedFileError(
            f"allowlist {source} is not valid YAML: {exc}", hint="check indentation"
        ) from exc
    return _parse(doc, source)


@functools.cache
def default_allowlist() -> Allowlist:
    """The allowlist shipped with chainproof (parsed once; allowlists are immutable)."""
    text = resources.files("chainproof.scan").joinpath("default_allowlist.yaml").read_text("utf-8")
    return allowlist_from_yaml(text, source="default_allowlist.yaml")


def load_allowlist(extra: Path | None = None) -> Allowlist:
    """The default allowlist, extended with ``extra`` (a YAML file of the same shape) if given."""
    base = default_allowlist()
    if extra is None:
        return base
    try:
        text = Path(extra).read_text("utf-8")
    except OSError as exc:
        raise BadInputError(
            f"cannot read allowlist {extra}: {exc.strerror or exc}",
            hint="pass a readable YAML file",
        ) from exc
    return base.extended(allowlist_from_yaml(text, source=str(extra)))
