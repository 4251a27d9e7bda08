"""The ``chainproof`` command line (Typer + Rich): the root app and the entry point.

Each sub-command lives in its own module (``assets``, ``checks``, ``registry``, ``access``,
``audit``, ``signing``, ``serving``); ``_common`` holds output, errors and ``open_operations``.
Commands are thin: parse, call the operations object (embedded
:class:`chainproof.service.Chainproof` or remote :class:`chainproof.client.RemoteChainproof`),
render.

Exit codes: 0 ok; 1 a verification or policy check failed; 2 bad input or usage (``run`` passes
a failing command's own status through). Every read command takes ``--json``; with it, errors
are one JSON object on stderr (see :mod:`chainproof.cli._common`).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from chainproof.cli import access, assets, audit, checks, registry, serving, signing
from chainproof.cli._common import (
    JsonOpt,
    emit_json,
    err,
    honour_root_json,
    open_operations,
    out,
    run_guarded,
    state,
    tidy_help,
    version_text,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Signed, tamper-evident provenance for the whole ML pipeline.")


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(version_text() + "\n")
        raise typer.Exit(0)


@app.callback()
def _global(
    server: Annotated[str | None, typer.Option(help="Team server URL (or CHAINPROOF_SERVER).")
                      ] = None,
    token: Annotated[str | None, typer.Option(help="API token (or CHAINPROOF_TOKEN).")] = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          callback=_version, is_eager=True)] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="JSON output for any command that has it (as COMMAND --json); errors "
                       "as one JSON object on stderr.")] = False,
) -> None:
    """Signed, tamper-evident provenance for the whole ML pipeline."""
    state.json_output = json_out
    if server:
        os.environ["CHAINPROOF_SERVER"] = server
    if token:
        os.environ["CHAINPROOF_TOKEN"] = token


# Top-level commands, in the order --help lists them, then the command groups.
for _module in (assets, checks, registry, serving):
    app.registered_commands.extend(_module.commands.registered_commands)

for _group, _name in ((audit.audit_app, "audit"), (audit.db_app, "db"),
                      (access.identity_app, "identity"), (access.key_app, "key"),
                      (access.trust_app, "trust"), (signing.attest_app, "attest"),
                      (signing.model_app, "model"), (access.role_app, "role"),
                      (access.token_app, "token"), (access.namespace_app, "namespace"),
                      (registry.registry_app, "registry"), (registry.policy_app, "policy"),
                      (assets.step_app, "step")):
    app.add_typer(_group, name=_name)

# Kept for callers that imported these from here before the split.
_open = open_operations
__all__ = ["JsonOpt", "app", "emit_json", "entry", "err", "main", "out"]


def _wants_json(argv: list[str]) -> bool:
    head = argv[:argv.index("--")] if "--" in argv else argv
    return "--json" in head


def build_command() -> Any:
    """The click command behind ``app``, with tidy --help (no ``<str>``/``<bool>`` tags)."""
    command = typer.main.get_command(app)
    tidy_help(command)
    honour_root_json(command)
    return command


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising (tests call this directly)."""
    args = list(sys.argv[1:] if argv is None else argv)
    state.json_errors = _wants_json(args)
    state.json_output = False  # set by the root --json option, if given
    command = build_command()
    return run_guarded(lambda: command.main(args=args, standalone_mode=False,
                                            prog_name="chainproof"))


def entry() -> None:
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing left to say to a closed pipe
    sys.exit(code)
