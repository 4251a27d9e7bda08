"""What every sub-command shares: the consoles, ``--json`` output, opening the operations object
(embedded or remote), reading the user's files, and turning every error into one message and an
exit code.

Exit codes: 0 ok; 1 a verification or policy check failed; 2 bad input or usage (a failing user
command in ``run`` passes its own status through). With ``--json`` anywhere on the command line
(before a ``--``: ``chainproof --json ls`` and ``chainproof ls --json`` alike), stdout carries
only the result and an error is one JSON object on stderr:
``{"error": {"type", "message", "hint", "problems", "exit_code"}}``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from chainproof.errors import (
    AuthenticationError,
    BadInputError,
    ChainproofError,
    VerificationError,
)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@dataclass
class _State:
    json_errors: bool = False  # errors as JSON (``--json`` anywhere before ``--``)
    json_output: bool = False  # the root option: ``chainproof --json COMMAND``


state = _State()

# Commands without a --json option whose output is JSON anyway: `chainproof --json` accepts them.
JSON_NATIVE = frozenset({"audit prove", "attest export"})


def new_table(*columns: str, **options: Any) -> Table:
    """A Rich table whose every column wraps long values (``overflow="fold"``) instead of
    cutting them ("warehouse/fraud-r…") when the terminal is narrow (80 columns)."""
    made = Table(*columns, **options)
    for column in made.columns:
        column.overflow = "fold"
    return made


def honour_root_json(command: Any, path: str = "") -> None:
    """Make the root ``--json`` (``chainproof --json ls``) mean what ``ls --json`` means.

    Every command with a ``--json`` option sees it set; a command without JSON output refuses
    the root ``--json`` (exit 2, before doing anything) rather than print text a script would
    try to parse. Walks the click command tree once, when the CLI is built."""
    subcommands = getattr(command, "commands", None)
    if isinstance(subcommands, dict):
        for name, sub in subcommands.items():
            honour_root_json(sub, f"{path} {name}".strip())
        return
    original = getattr(command, "callback", None)
    if original is None or getattr(original, "_honours_root_json", False):
        return
    takes_json = any(getattr(p, "name", None) == "json_out" for p in command.params)

    def callback(*args: Any, **kwargs: Any) -> Any:
        if takes_json:
            kwargs["json_out"] = bool(kwargs.get("json_out")) or state.json_output
        elif state.json_output and path not in JSON_NATIVE:
            raise BadInputError(f"`chainproof {path}` has no JSON output",
                                hint=f"leave out --json: chainproof {path} ...")
        return original(*args, **kwargs)

    wrapped = functools.update_wrapper(callback, original)
    setattr(wrapped, "_honours_root_json", True)  # noqa: B010 - a marker on a function
    command.callback = wrapped


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def open_operations() -> Any:
    """The embedded workspace, or the team server when CHAINPROOF_SERVER is set: the same
    operations either way (:class:`chainproof.service.Chainproof` or
    :class:`chainproof.client.RemoteChainproof`)."""
    server = os.environ.get("CHAINPROOF_SERVER")
    if server:
        from chainproof.client import RemoteChainproof

        return RemoteChainproof(check_server_url(server), os.environ.get("CHAINPROOF_TOKEN", ""))
    from chainproof.service import Chainproof

    cp = Chainproof.open()
    try:
        check_identity(cp)
    except BaseException:
        cp.close()
        raise
    return cp


def check_server_url(url: str) -> str:
    """``CHAINPROOF_SERVER`` (or ``--server``) must be an http(s) URL with a host and a valid
    port: a clear error (exit 2) instead of an HTTP library's exception."""
    from urllib.parse import urlsplit

    def bad(why: str) -> BadInputError:
        return BadInputError(f"CHAINPROOF_SERVER {url!r} is not a server URL: {why}",
                             hint="set CHAINPROOF_SERVER (or --server) to e.g. "
                                  "https://chainproof.internal:8700")

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme not in ("http", "https"):
        raise bad("it must start with http:// or https://")
    if not parts.hostname:
        raise bad("it names no host")
    if port is not None and not 1 <= port <= 65535:
        raise bad(f"port {port} is not 1-65535")
    return url.strip()


def check_identity(cp: Any) -> None:
    """In an embedded workspace the caller (``CHAINPROOF_IDENTITY``, else the login name) must
    be an identity of the workspace: otherwise every read would silently show nothing and every
    write fail with a misleading "may not". One clear error (exit 2) instead."""
    name = cp.identity
    if any(row.get("name") == name for row in cp.identity_list()):
        return
    source = ("CHAINPROOF_IDENTITY" if os.environ.get("CHAINPROOF_IDENTITY")
              else "your login name (CHAINPROOF_IDENTITY is not set)")
    raise AuthenticationError(
        f"identity {name!r} (from {source}) does not exist in this workspace",
        hint="set CHAINPROOF_IDENTITY to one of its identities (the one that ran "
             f"`chainproof init` is an admin), or have an admin run `chainproof identity "
             f"create {name}`")


_open = open_operations


def read_bytes(path: Path) -> bytes:
    """A user's input file, or a clear error (exit 2) naming it."""
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise BadInputError(f"{path} is a folder, not a file", hint="give a file") from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}",
                            hint="check the path") from None


def read_text(path: Path, *, what: str = "file", nonempty: bool = False) -> str:
    """A user's UTF-8 text file (a policy, a schema), or a clear error (exit 2); with
    ``nonempty``, a file holding only whitespace is refused too."""
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not a UTF-8 text {what}",
                            hint=f"give the {what} as YAML text") from None
    if nonempty and not text.strip():
        raise BadInputError(f"{path} is empty", hint=f"give the {what} as YAML text")
    return text


def writable_file(path: Path, *, option: str) -> Path:
    """Check before doing any work that ``path`` can be created: its folder exists, and it is
    not itself a folder. Nothing is written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise BadInputError(f"{option} {path} is a folder", hint="give a file name")
    if not parent.is_dir():
        raise BadInputError(f"{option} {path}: folder {parent} does not exist",
                            hint=f"create it first (mkdir -p {parent}) or choose another path")
    if not os.access(parent, os.W_OK):
        raise BadInputError(f"{option} {path}: folder {parent} is not writable",
                            hint="choose another path")
    return path


# --- errors -> one message and an exit code ------------------------------------------------------


def _click_exception_modules() -> list[Any]:
    """click's exception module and typer's vendored copy (``typer._click``, typer >= 0.2x):
    whichever are installed, so errors are caught whatever click/typer version is present."""
    modules: list[Any] = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = __import__(name, fromlist=["UsageError"])
        except ImportError:
            continue
        modules.append(module)
    return modules


def _classes(attr: str, *extra: Any) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [c for c in extra if isinstance(c, type)]
    for module in _click_exception_modules():
        cls = getattr(module, attr, None)
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


EXIT_TYPES = _classes("Exit", getattr(typer, "Exit", None))
ABORT_TYPES = _classes("Abort", getattr(typer, "Abort", None))
USAGE_TYPES = _classes("UsageError")
CLICK_TYPES = _classes("ClickException")
NO_ARGS_HELP_TYPES = _classes("NoArgsIsHelpError")

_STEP_STATUS = re.compile(r"command exited with status (-?\d+)")


def report_error(kind: str, message: str, exit_code: int, *, hint: str | None = None,
                 problems: list[str] | None = None, label: str = "error") -> int:
    """Print one error (plain, or JSON on stderr in --json mode) and return its exit code."""
    if state.json_errors:
        sys.stderr.write(json.dumps({"error": {"type": kind, "message": message, "hint": hint,
                                               "problems": list(problems or []),
                                               "exit_code": exit_code}},
                                    indent=2, sort_keys=True) + "\n")
        return exit_code
    err.print(f"[red]{label}:[/] {message}", highlight=False, markup=True)
    for problem in problems or []:
        err.print(f"  - {problem}", highlight=False, markup=False)
    if hint:
        err.print(f"  [yellow]hint:[/] {hint}", highlight=False)
    return exit_code


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def step_exit_status(exc: ChainproofError) -> int | None:
    """The user command's own exit status when ``run`` failed because its command failed."""
    status = getattr(exc, "exit_status", None)
    if isinstance(status, int):
        return status
    if type(exc).__name__ != "StepFailedError":
        return None
    match = _STEP_STATUS.search(exc.message)
    if match:
        code = int(match.group(1))
        return code if 0 < code < 256 else 1
    if "command could not start" in exc.message:
        return 127  # as a shell says "command not found"
    return None


def run_guarded(invoke: Callable[[], Any]) -> int:
    """Call ``invoke`` and map every outcome onto an exit code; nothing escapes as a traceback
    except a genuine bug."""
    try:
        result = invoke()
    except EXIT_TYPES as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        return int(code or 0)
    except ABORT_TYPES:
        return report_error("aborted", "aborted", 130)
    except KeyboardInterrupt:
        return report_error("aborted", "interrupted", 130)
    except NO_ARGS_HELP_TYPES as exc:
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            out.print(ctx.get_help(), markup=False, highlight=False)
        return 2
    except USAGE_TYPES as exc:
        ctx = getattr(exc, "ctx", None)
        path = ctx.command_path if ctx is not None else "chainproof"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return report_error("usage", _escape(message), 2, hint=f"see `{path} --help`")
    except CLICK_TYPES as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return report_error("usage", _escape(message), int(getattr(exc, "exit_code", 2) or 2))
    except ChainproofError as exc:
        status = step_exit_status(exc)
        code = status if status is not None else exc.exit_code
        return report_error(type(exc).__name__, _escape(exc.message), code,
                            hint=_escape(exc.hint) if exc.hint else None,
                            problems=list(getattr(exc, "problems", [])),
                            label="verification failed" if isinstance(exc, VerificationError)
                            else "error")
    except BrokenPipeError:
        # `chainproof ls | head`: the reader went away; that is not an error of ours.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except OSError as exc:
        what = exc.strerror or str(exc) or type(exc).__name__
        where = getattr(exc, "filename", None)
        message = f"{what}: {where}" if where else f"cannot read or write a file: {what}"
        return report_error(type(exc).__name__, _escape(message), 2,
                            hint="check the path and its permissions")
    except UnicodeDecodeError as exc:
        # A binary file where text (YAML, CSV) was expected: bad input, not a crash.
        return report_error("BadInputError", _escape(f"a file is not UTF-8 text ({exc.reason} at "
                                                     f"byte {exc.start})"), 2,
                            hint="give a UTF-8 text file")
    return result if isinstance(result, int) else 0


# --- help without <str>/<bool> tags -------------------------------------------------------------

_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH",
               "Path": "PATH", "bool": ""}


def _metavar_for(tag: str) -> str:
    inner = tag.strip("<>")
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[5:-1]
    return _TYPE_NAMES.get(inner, inner.upper())


def tidy_help(command: Any, ctx_factory: Callable[[Any], Any] | None = None) -> None:
    """Typer's newer releases print ``<str>``/``<bool>`` type tags in ``--help``; show plain
    metavars (``TEXT``, ``PATH``) and nothing for flags, as click does. A no-op on releases
    whose options have no ``display_type_rich``."""
    text = getattr(command, "help", None)
    if isinstance(text, str) and "\n" in text:
        # Docstrings wrap at 100 columns; let the terminal wrap each paragraph instead.
        command.help = "\n\n".join(" ".join(line.strip() for line in para.splitlines())
                                   for para in inspect.cleandoc(text).split("\n\n"))
    params = list(getattr(command, "params", []))
    make_ctx = ctx_factory
    if make_ctx is None:
        context_cls = getattr(command, "context_class", None)
        make_ctx = context_cls if context_cls is not None else None
    if make_ctx is not None and hasattr(command, "get_help_option"):
        try:
            help_option = command.get_help_option(make_ctx(command))
        except Exception:  # pragma: no cover - older click without a cached help option
            help_option = None
        if help_option is not None:
            params.append(help_option)
    for param in params:
        if not hasattr(param, "display_type_rich") or param.metavar is not None:
            continue
        if getattr(param, "param_type_name", "") == "argument":
            # `{path} <path>` -> `PATH`, as click shows arguments.
            param.metavar = (param.name or "arg").upper()
            setattr(param, "display_type_rich", lambda *args, **kwargs: None)  # noqa: B010
            continue
        if getattr(param, "param_type_name", "") != "option":
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
            continue
        try:
            tag = param.display_type(None)
        except Exception:
            continue
        if isinstance(tag, str) and tag.startswith("<"):
            param.metavar = _metavar_for(tag)
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub, make_ctx)


def version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"chainproof {version('chainproof')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from chainproof import __version__

        return f"chainproof {__version__}"


def flatten_numbers(values: Any, prefix: str = "") -> list[tuple[str, float]]:
    """Numeric leaves of a metrics document (``{"metrics": {"auc": 0.9}}`` -> ``auc``)."""
    found: list[tuple[str, float]] = []
    if isinstance(values, dict):
        for key, value in sorted(values.items()):
            if isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                found.append((f"{prefix}{key}", value))
            elif isinstance(value, dict) and not prefix:
                inner = "" if key == "metrics" else f"{key}."
                found.extend(flatten_numbers(value, inner))
    return found
