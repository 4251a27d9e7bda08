"""What every sub-command shares: the consoles, ``--json`` output, opening the operations object
(embedded or remote), reading the user's files, and turning every error into one message and an
exit code.

Exit codes: 0 ok; 1 a verification or policy check failed; 2 bad input or usage (a failing user
command in ``run`` passes its own status through). With ``--json`` anywhere on the command line
(before a ``--``), stdout carries only the result and an error is one JSON object on stderr:
``{"error": {"type", "message", "hint", "problems", "exit_code"}}``.
"""

from __future__ import annotations

import contextlib
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

from chainproof.errors import BadInputError, ChainproofError, VerificationError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@dataclass
class _State:
    json_errors: bool = False


state = _State()


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def open_operations() -> Any:
    """The embedded workspace, or the team server when CHAINPROOF_SERVER is set: the same
    operations either way (:class:`chainproof.service.Chainproof` or
    :class:`chainproof.client.RemoteChainproof`)."""
    server = os.environ.get("CHAINPROOF_SERVER")
    if server:
        from chainproof.client import RemoteChainproof

        return RemoteChainproof(server, os.environ.get("CHAINPROOF_TOKEN", ""))
    from chainproof.service import Chainproof

    return Chainproof.open()


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


def read_text(path: Path, *, what: str = "file") -> str:
    """A user's UTF-8 text file (a policy, a schema), or a clear error (exit 2)."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not a UTF-8 text {what}",
                            hint=f"give the {what} as YAML text") from None


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
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return report_error(type(exc).__name__, _escape(f"{exc.strerror or exc}:{where}"), 2,
                            hint="check the path and its permissions")
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
