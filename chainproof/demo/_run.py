"""``run_demo``: set up a workspace, run the warehouse pipeline, play the attacks, explain."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from sqlalchemy.exc import OperationalError

from chainproof.demo import _show
from chainproof.demo._model import Attempt, DemoResult, Outcome
from chainproof.demo._pipeline import (
    ACTORS,
    ADMIN,
    FRAUD,
    TASKS,
    Demo,
    requires,
)
from chainproof.demo._scenarios import DESCRIPTIONS, SCENARIOS
from chainproof.errors import (
    BadInputError,
    ChainproofError,
    DatabaseError,
    UnapprovedModelError,
    ValidationFailedError,
    WorkspaceError,
)
from chainproof.service import Chainproof

DEFAULT_ROWS = 30_000

# Settings the demo must not inherit: it builds its own isolated workspace, and a developer's
# CHAINPROOF_DB pointing at a real database must never receive demo data.
_ISOLATE = ("CHAINPROOF_DB", "CHAINPROOF_STORE", "CHAINPROOF_LOG_KEY", "CHAINPROOF_LOG_PUBKEY",
            "CHAINPROOF_SIGNING_KEY", "CHAINPROOF_IDENTITY", "CHAINPROOF_SERVER",
            "CHAINPROOF_TOKEN")


@contextmanager
def _isolated_env() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in _ISOLATE if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def run_demo(*, scenario: str | None = None, db: str | None = None, store: str | None = None,
             workdir: Path | None = None, console: Console | None = None,
             rows: int = DEFAULT_ROWS) -> DemoResult:
    """Run the warehouse demo; ``scenario`` runs the pipeline and that one attack only.

    ``db``/``store``: a SQLAlchemy URL and a store (path or ``s3://bucket/prefix``); default
    SQLite and a local store inside ``workdir`` (a new temporary folder when not given, kept
    afterwards so its workspace can be explored). ``rows``: orders to generate.
    """
    if scenario is not None and scenario not in SCENARIOS:
        raise BadInputError(f"unknown demo scenario {scenario!r}",
                            hint="choose one of: " + ", ".join(SCENARIOS))
    if rows < 1000:
        raise BadInputError(f"the demo needs at least 1000 orders, got {rows}",
                            hint="the label checks need a few hundred fraud cases")
    if db is not None:
        _require_empty_database(db)
    console = console or Console()
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="chainproof-demo-"))
    project = workdir / "project"
    project.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with _isolated_env():
        cp = Chainproof.init(project, db=db, store=store, identity=ADMIN)
        demo = Demo(cp, workdir, console, rows)
        try:
            result = _run(demo, scenario)
        finally:
            if demo.service is not None:
                demo.service.close()
            cp.close()
    console.print(f"\n[dim]finished in {time.monotonic() - started:.0f} s; workspace kept in "
                  f"{_escape(str(project))}[/]", highlight=False)
    console.print(_escape(_show.explore_hint(project, ADMIN)), style="dim", highlight=False)
    return result


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _require_empty_database(db: str) -> None:
    """The demo creates identities, a log key and a whole history: it must start from an
    empty database, never mix into a real one (whose log it could not even extend: its
    checkpoints are signed by another workspace's key)."""
    from sqlalchemy import inspect, text

    from chainproof.db import open_engine

    engine = open_engine(db)
    try:
        if "log_entries" not in inspect(engine).get_table_names():
            return
        with engine.connect() as conn:
            entries = conn.execute(text("SELECT COUNT(*) FROM log_entries")).scalar_one()
    except OperationalError as exc:
        raise DatabaseError(f"cannot reach the demo database: {exc.orig}",
                            hint="check the --db URL; nothing was changed") from None
    finally:
        engine.dispose()
    if entries:
        raise WorkspaceError(
            f"the demo needs an empty database, but this one already holds {entries} log "
            "entries", hint="create a fresh database for the demo (e.g. `createdb "
                            "chainproof_demo`) or leave --db out to use SQLite")


def _run(demo: Demo, scenario: str | None) -> DemoResult:
    result = DemoResult(workdir=demo.workdir)
    con = demo.console
    _show.banner(con, demo, scenario)
    run_pipeline(demo)
    for name in [scenario] if scenario else list(SCENARIOS):
        _show.section(con, f"[bold]attack: {name}[/] — {DESCRIPTIONS[name]}", style="red")
        try:
            result.attempts.extend(SCENARIOS[name](demo))
        except ChainproofError as exc:
            result.errors.append(f"{name}: {type(exc).__name__}: {exc.message}")
            con.print(f"  [bold red]scenario {name} broke[/]: {exc}")
        except Exception as exc:
            # A scenario that crashes is a demo defect: report it (ok becomes False) and still
            # play the others, rather than hide what they would show.
            result.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            con.print(f"  [bold red]scenario {name} broke[/]: {type(exc).__name__}: {exc}")
    result.serving_ok, result.serving = _check_serving(demo)
    _audit_all(demo, result)
    _show.explain(con, demo, demo.serving_ref(FRAUD))
    _show.summary(con, result)
    return result


def run_pipeline(demo: Demo) -> None:
    con = demo.console
    _show.section(con, "[bold]1. identities, keys and trust policy[/]")
    demo.create_actors()
    _show.actors(con, demo, ACTORS)
    _show.section(con, "[bold]2. data-eng registers raw data and labels[/]")
    demo.register_raw_data()
    demo.register_code()
    _show.assets(con, demo, ["orders", "tickets", "fraud-labels", "delivery-labels",
                             "ticket-labels", "features.py", "train.py", "evaluate.py"])
    _show.section(con, "[bold]3. svc-feature-job builds features[/]")
    demo.refs.update(demo.build_features())
    _show.assets(con, demo, ["order-features", "ticket-features"])
    _show.section(con, "[bold]4. svc-evaluator validates the training data[/]")
    report_ref, report = demo.validate_training_data(demo.refs["order-features"],
                                                     demo.refs["fraud-labels"], baseline=True)
    demo.refs["validation"] = report_ref
    if not report.passed:
        raise ValidationFailedError("the demo's own clean data failed validation",
                                    problems=list(report.problems),
                                    hint="a defect in the demo data or the validator")
    con.print(f"  {report_ref}: [green]passed[/] ({report.rows} rows, label-issue rate "
              f"{(report.labels.issue_rate or 0):.2%}); HTML report in "
              f"{demo.workdir / 'reports'}")
    _show.section(con, "[bold]5. svc-trainer trains, svc-evaluator evaluates and scans[/]")
    models = []
    for task in TASKS:
        features, labels = demo.refs[task.features], demo.refs[task.labels]
        model = demo.train(task, features=features, labels=labels)
        metrics_ref, metrics = demo.evaluate(task, model, features=features, labels=labels)
        scan_ref, scan = demo.scan(task, model)
        version = demo.cp.resolve(model)
        if metrics["model_digest"] != version.digest or not scan.clean:
            raise ValidationFailedError(f"{model}: evaluation or scan does not match the model",
                                        hint="a defect in the demo pipeline")
        demo.refs[task.model] = model
        demo.refs[f"{task.model}-metrics"] = metrics_ref
        demo.good[task.model] = version.digest
        models.append((task, model, metrics_ref, metrics["metrics"], scan_ref, scan))
    _show.models(con, models)
    _show.section(con, "[bold]6. approvals and promotion to production[/]")
    if requires("registry"):
        gates = [(task, demo.promote(task, demo.refs[task.model])) for task in TASKS]
        demo.promoted = True
        _show.gates(con, gates)
    else:
        con.print("  [yellow]not available yet[/]: the registry (aliases, approvals, policy "
                  "gate) is not in this build")
    _show.section(con, "[bold]7. the prediction service loads verified models and serves[/]")
    if not requires("registry"):
        con.print("  [yellow]not available yet[/]: the service serves MODEL@ALIAS only")
        return
    demo.service = demo.new_replica()
    status = demo.service.status()
    refused = {m: s.refusal for m, s in status.items() if s.digest is None}
    if refused:
        raise UnapprovedModelError(f"the prediction service refused the promoted models: "
                                   f"{refused}", hint="a defect in the demo pipeline")
    _show.predictions(con, demo)


def _check_serving(demo: Demo) -> tuple[bool, dict[str, str]]:
    """Production must still serve the last good model of every task: the running replica
    after one more poll, and a brand-new replica verifying everything from scratch."""
    con, service = demo.console, demo.service
    _show.section(con, "[bold]production after the attacks[/]")
    if service is None:
        con.print("  [yellow]no prediction service in this build[/]")
        return False, {}
    service.poll()
    running = service.status()
    with demo.new_replica() as fresh:
        cold = fresh.status()
    ok = True
    for task in TASKS:
        served, again = running[task.model], cold[task.model]
        same = served.digest == demo.good[task.model] == again.digest
        ok &= same
        con.print(f"  {task.model}: {service.where} serves v{served.version} "
                  f"{(served.digest or 'nothing')[:19]}…; a new replica verified "
                  f"{(again.digest or 'nothing')[:19]}… "
                  + ("[green]= the evaluated bytes[/]" if same else "[bold red]CHANGED[/]"))
    return ok, {m: s.digest or "" for m, s in running.items()}


def _audit_all(demo: Demo, result: DemoResult) -> None:
    from chainproof.demo._scenarios import _audit

    try:
        report = _audit(demo)
    except ChainproofError as exc:
        result.errors.append(f"audit verify: {exc.message}")
        demo.console.print(f"  [bold red]audit verify failed[/]: {exc}")
        return
    size = getattr(report, "size", None) or getattr(report, "entries", "all")
    demo.console.print(f"  audit verify: [green]log intact[/] ({size} entries; every state "
                       "change is in the signed Merkle log)")


__all__ = ["DEFAULT_ROWS", "Attempt", "DemoResult", "Outcome", "run_demo"]
