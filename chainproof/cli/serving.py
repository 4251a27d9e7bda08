"""Long-running and end-to-end commands: ``server``, ``serve`` and ``demo``."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from chainproof.cli._common import out

commands = typer.Typer()


@commands.command()
def demo(
    scenario: Annotated[str | None, typer.Option(help="Run one attack scenario: poisoning, "
                                                      "feature-tampering, substitution, "
                                                      "unauthorized-promotion, "
                                                      "over-broad-runner.")] = None,
    db: Annotated[str | None, typer.Option(help="Database URL (default: SQLite in a temp "
                                                "workspace).")] = None,
    store: Annotated[str | None, typer.Option(help="Object store (default: local).")] = None,
    rows: Annotated[int, typer.Option(help="Orders to generate.")] = 30_000,
) -> None:
    """The warehouse pipeline end to end, then the seed's attacks, each caught by a control
    with the log entry or report as evidence (exit 1 if any attack is missed)."""
    from chainproof.demo import run_demo

    result = run_demo(scenario=scenario, db=db, store=store, console=out, rows=rows)
    if not result.ok:
        raise typer.Exit(1)


@commands.command()
def server(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (1-65535).", min=1, max=65535)] = 8700,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
) -> None:
    """Run the team server over this workspace's (or CHAINPROOF_DB / CHAINPROOF_STORE's)
    database and store. Stateless: run as many as you like on one database."""
    import uvicorn

    from chainproof.service import Chainproof

    os.environ.pop("CHAINPROOF_SERVER", None)
    # Fail now with one clear message (exit 2), not in every worker on its first request:
    # the database and its schema, the log's origin, the log key.
    with Chainproof.open() as cp:
        cp.check_server_ready()
    uvicorn.run("chainproof.api.factory:app", host=host, port=port, workers=workers,
                factory=True, log_level="info")


@commands.command()
def serve(
    refs: Annotated[list[str], typer.Argument(help="MODEL@ALIAS to serve (one or more).")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (1-65535).", min=1, max=65535)] = 8000,
    poll: Annotated[float, typer.Option(help="Seconds between alias checks.", min=0.1)] = 5.0,
    allow_override: Annotated[bool, typer.Option(help="Serve break-glass promotions too.")
                              ] = False,
) -> None:
    """Run the reference prediction service: /predict/{model} and /status, serving only
    verified models and swapping atomically when an alias moves and the new model verifies."""
    import uvicorn

    from chainproof.cli._common import open_operations
    from chainproof.serve.app import create_app

    # Embedded, or against the team server (CHAINPROOF_SERVER, CHAINPROOF_TOKEN): the same
    # verified loading either way, and no workspace is needed for the latter.
    with open_operations() as ops:  # fail now, with a clear message, if neither is usable
        ops.model_list()  # a remote server is contacted only by a request
    app_ = create_app(open_operations, refs, poll_seconds=poll,
                      allow_override=allow_override)
    uvicorn.run(app_, host=host, port=port, log_level="info")
