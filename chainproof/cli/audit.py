"""The tamper-evident log and the database: ``audit ...`` and ``db ...``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from chainproof.cli._common import (
    JsonOpt,
    emit_json,
    new_table,
    open_operations,
    out,
    writable_file,
)
from chainproof.errors import BadInputError

audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log.")
db_app = typer.Typer(no_args_is_help=True, help="The metadata database.")


@audit_app.command("verify")
def audit_verify(
    since: Annotated[list[Path] | None, typer.Option(
        "--since", help="Checkpoint file(s) kept by a witness; every checkpoint in each is "
                        "checked.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Recompute the log, check checkpoints and witnesses, and replay it against the database."""
    from chainproof.ledger import audit

    notes: list[str] = []
    for path in since or []:
        notes.extend(audit.parse_witness_file(path))
    with open_operations() as cp:
        report = cp.audit_verify(notes)
    if json_out:
        emit_json(report.to_dict())
        return
    out.print(f"[green]audit log verified[/]: {report.size} entries, root {report.root_hash}, "
              f"newest checkpoint at size {report.checkpoint_size}, "
              f"{report.witnesses_checked} witnessed checkpoint(s) consistent; "
              + ", ".join(f"{n} {t}" for t, n in report.rows_checked.items())
              + " match the log", highlight=False)
    warning = report.to_dict().get("warning")
    if warning:  # e.g. no witness and no remembered checkpoint: a rollback would not show
        out.print(f"[yellow]note[/]: {warning}", highlight=False)


@audit_app.command("log")
def audit_log(
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    obj: Annotated[str | None, typer.Option("--object", help="Only objects starting with this."
                                            )] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List log entries, newest first."""
    if limit < 1:
        raise BadInputError(f"--limit {limit} must be at least 1")
    with open_operations() as cp:
        entries = cp.audit_log(action=action, actor=actor, obj=obj, limit=limit)
    if json_out:
        emit_json(entries)
        return
    table = new_table("seq", "time", "actor", "action", "object")
    for e in entries:
        table.add_row(str(e["seq"]), e["time"], e["actor"], e["action"], e["object"])
    out.print(table)


@audit_app.command("checkpoint")
def audit_checkpoint(
    out_file: Annotated[Path | None, typer.Option("--out", help="Append the checkpoint to this "
                                                  "file (a witness file).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the newest signed checkpoint, or append it to a witness file."""
    from chainproof.ledger import checkpoint

    if out_file is not None and not out_file.is_file():
        writable_file(out_file, option="--out")
    with open_operations() as cp:
        latest = cp.latest_checkpoint()
    if out_file is not None:
        with out_file.open("a", encoding="utf-8") as fh:
            fh.write(checkpoint.format_checkpoint_file([latest["note"]]))
        if json_out:
            emit_json({**latest, "appended_to": str(out_file)})
            return
        out.print(f"appended checkpoint at size {latest['size']} to {out_file} (check the log "
                  f"against it later: chainproof audit verify --since {out_file})",
                  highlight=False)
        return
    if json_out:
        emit_json(latest)
        return
    sys.stdout.write(latest["note"])


@audit_app.command("prove")
def audit_prove(
    seq: Annotated[int, typer.Argument(help="Entry sequence number.")],
    size: Annotated[int | None, typer.Option(help="Tree size (default: now).")] = None,
) -> None:
    """Print an RFC 6962 inclusion proof for one entry (JSON)."""
    with open_operations() as cp:
        emit_json(cp.prove(seq, size))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to this version's schema."""
    from chainproof.db import open_engine, upgrade
    from chainproof.workspace import load_settings

    settings = load_settings()
    upgrade(open_engine(settings.db_url))
    out.print("[green]database schema is current[/]")
