"""Rich rendering of the demo: what each stage did, ``explain``, and the summary table."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chainproof.demo._model import DemoResult, Outcome
from chainproof.demo._pipeline import FRAUD, PIPELINE_DIR, TASKS, Demo
from chainproof.errors import ChainproofError

_STYLE = {Outcome.CAUGHT: "bold green", Outcome.MISSED: "bold red",
          Outcome.UNAVAILABLE: "yellow"}


def banner(con: Console, demo: Demo, scenario: str | None) -> None:
    cp = demo.cp
    what = f"scenario [bold]{scenario}[/]" if scenario else "all five attacks"
    con.print(Panel.fit(
        "[bold]chainproof warehouse demo[/]\n"
        f"{demo.rows:,} orders with payments and shipments, ~{demo.rows // 3:,} support "
        "tickets;\nthree models; every stage a separate identity with its own signing key; "
        f"then {what}.\n"
        f"[dim]database: {_redact(cp.settings.db_url)}   store: {cp.settings.store}[/]",
        border_style="blue"), soft_wrap=False)


def _fold(table: Table) -> Table:
    """Long names wrap onto a second line instead of being cut ("warehouse/fraud-r…") when the
    terminal is narrow (80 columns)."""
    for column in table.columns:
        column.overflow = "fold"
    return table


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url


def actors(con: Console, demo: Demo, table: dict[str, tuple[str, str]]) -> None:
    out = Table(show_edge=False, pad_edge=False)
    out.add_column("identity")
    out.add_column("kind")
    out.add_column("does")
    for name, (kind, does) in table.items():
        out.add_row(name, kind, does)
    con.print(_fold(out))
    con.print("  trust policy v1: only data-eng registers data and labels, only ml-eng code; "
              "each step kind has exactly one signer")


def assets(con: Console, demo: Demo, names: list[str]) -> None:
    out = Table(show_edge=False, pad_edge=False)
    for col in ("asset version", "kind", "by", "digest", "size"):
        out.add_column(col)
    for name in names:
        v = demo.cp.resolve(demo.refs[name])
        out.add_row(v.ref, v.kind.value, v.created_by, v.digest[:19] + "…", f"{v.size:,} B")
    con.print(_fold(out))


def models(con: Console, rows: list[tuple[Any, str, str, dict[str, Any], str, Any]]) -> None:
    out = Table(show_edge=False, pad_edge=False)
    for col in ("model", "metrics", "evaluation", "scan"):
        out.add_column(col)
    for task, model, metrics_ref, values, scan_ref, scan in rows:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items()
                          if isinstance(v, float) and k != "positive_rate")
        out.add_row(f"{model}\n[dim]{task.title}[/]", shown, metrics_ref,
                    f"{scan_ref}: " + ("[green]clean[/]" if scan.clean else "[red]NOT clean[/]"))
    con.print(_fold(out))


def gates(con: Console, results: list[tuple[Any, Any]]) -> None:
    """The promotion gate's signed decision for each model: every rule and its outcome."""
    out = Table(show_edge=False, pad_edge=False)
    for col in ("promotion to production", "rule", "outcome"):
        out.add_column(col)
    for _task, gate in results:
        first = True
        for outcome in gate.outcomes:
            out.add_row(f"{gate.model}@{gate.version}" if first else "", outcome.rule,
                        ("[green]✓[/] " if outcome.passed else "[red]✗[/] ") + outcome.detail)
            first = False
    con.print(_fold(out))
    con.print("  requested by svc-deployer, approved by approver-alice and approver-bob "
              "(signed), executed by svc-deployer under a signed gate decision")


def predictions(con: Console, demo: Demo) -> None:
    """Ask the running replica over HTTP, with rows built by the registered feature code."""
    assert demo.service is not None and demo.data is not None
    feature_code = _load_features()
    orders = demo.data.orders.head(5)
    x = feature_code.transform(orders).drop(columns=["order_id"])
    delay_cols = ["distance_km", "weight_kg", "express", "n_items", "carrier_dhl",
                  "carrier_ups", "carrier_local", "wh_north", "wh_south", "wh_east", "wh_west",
                  "wh_central"]
    tickets = feature_code.transform_tickets(demo.data.tickets.head(5))
    fraud = demo.service.predict(demo.serving_ref(FRAUD), x)
    delay = demo.service.predict(demo.serving_ref(TASKS[1]), x[delay_cols])
    priority = demo.service.predict(demo.serving_ref(TASKS[2]),
                                    tickets.drop(columns=["ticket_id"]))
    out = Table(title="POST /predict on the verified models", show_edge=False)
    for col in ("order", "amount", "P(fraud review)", "expected delay", "ticket", "priority"):
        out.add_column(col)
    for i in range(len(orders)):
        out.add_row(str(orders["order_id"].iloc[i]), f"${orders['amount'].iloc[i]:,.2f}",
                    f"{fraud['probabilities'][i][1]:.3f}",
                    f"{delay['predictions'][i]:.1f} d", str(tickets["ticket_id"].iloc[i]),
                    str(priority["predictions"][i]))
    con.print(_fold(out))
    for served in demo.service.status().values():
        con.print(f"  GET /status: {served.ref} → v{served.version} "
                  f"{(served.digest or '')[:19]}… verified {served.verified_at}")


def _load_features() -> Any:
    """The very file registered as features.py@1, imported to build the serving rows."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_chainproof_demo_features",
                                                  PIPELINE_DIR / "features.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def explain(con: Console, demo: Demo, ref: str) -> None:
    from chainproof.provenance import check_chain

    section(con, f"[bold]explain {ref}[/]")
    try:
        answer = demo.cp.explain(ref)
        chain = check_chain(demo.cp.ctx, answer["subject"]["ref"])
    except ChainproofError as exc:
        con.print(f"  [red]explain failed: {exc}[/]")
        return
    links = {link.ref: link for link in chain.links}

    def status(item: dict[str, Any]) -> str:
        link = links.get(item["ref"])
        parts = ["[green]bytes ok[/]" if item["status"] == "verified"
                 else f"[red]{item['status']}[/]"]
        if link is not None:
            parts.append("[green]chain ok[/]" if not link.problems
                         else f"[red]{link.problems[0]}[/]")
        return ", ".join(parts)

    out = Table(show_edge=False, pad_edge=False, show_header=True)
    for col in ("question", "answer", "by", "status"):
        out.add_column(col)
    subject = answer["subject"]
    out.add_row("which model", f"{subject['ref']} {subject['digest'][:19]}…",
                subject["created_by"], status(subject))
    for item in answer["data"]:
        label = "which labels" if item["kind"] == "labels" else "which data"
        out.add_row(label, item["ref"], item["created_by"], status(item))
    for item in answer["intermediates"]:
        out.add_row("which features", item["ref"], item["created_by"], status(item))
    for item in answer["code"]:
        used = ", ".join(item.get("used_by_steps", []))
        out.add_row(f"which code ({used})", item["ref"], item["created_by"], status(item))
    for step in answer["steps"]:
        env = step["environment"]
        link = next((lk for lk in chain.links if lk.step == step["id"]), None)
        signed = (f"signed {link.keyid[:12]}…" if link and link.keyid else "unsigned")
        out.add_row(f"which job ({step['kind']})",
                    f"step {step['id'][:12]} on {env.get('hostname')}, python "
                    f"{env.get('python')}", step["identity"],
                    f"{signed}, " + ("[green]verified[/]" if link and not link.problems
                                     else "[red]not verified[/]"))
    for item in answer["metrics"]:
        values = (item.get("values") or {}).get("metrics", {})
        shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items() if isinstance(v, float))
        out.add_row("which metrics", f"{item['ref']}: {shown}", item["created_by"],
                    status(item))
    for item in answer["reports"]:
        out.add_row("which reports", item["ref"], item["created_by"], status(item))
    validation = demo.refs.get("validation")
    if validation:
        out.add_row("which validation", f"{validation} (training data gate: passed)",
                    "svc-evaluator", "[green]recorded[/]")
    promotion = answer.get("promotion")
    if promotion is not None:
        approvals = promotion.get("approvals") or []
        who = ", ".join(str(a.get("approver")) for a in approvals) or "none"
        out.add_row("which approvals", f"{who} (signed approvals over this request)",
                    "approvers", f"{len(approvals)} recorded")
        for rule in promotion.get("rules") or []:
            out.add_row(f"gate: {rule.get('rule')}", str(rule.get("detail")), "policy gate",
                        "[green]passed[/]" if rule.get("passed") else "[red]failed[/]")
        out.add_row("which promotion",
                    f"{ref} → version {promotion['version']}, decision "
                    f"{promotion.get('decision')} (policy v{promotion.get('policy_version')})",
                    str(promotion.get("signed_by") or promotion["moved_by"]),
                    "[red]BREAK-GLASS OVERRIDE[/]" if promotion["override"]
                    else "[green]signed decision[/]")
    else:
        out.add_row("which approvals", "registry not in this build", "", "[yellow]n/a[/]")
    served = demo.service.status()[FRAUD.model] if demo.service else None
    if served is not None:
        same = served.digest == subject["digest"]
        out.add_row("serving = evaluated?",
                    f"{demo.service.where if demo.service else ''} serves "
                    f"{(served.digest or 'nothing')[:19]}…", "svc-predict",
                    "[green]identical bytes[/]" if same else "[red]DIFFERENT[/]")
    con.print(_fold(out))
    verdict = ("[green]every link verified[/]" if answer["verified"] and chain.ok
               else "[red]some links failed verification[/]")
    con.print(f"  {verdict} under trust policy v{chain.policy_version} "
              f"({len(chain.links)} links)")


def summary(con: Console, result: DemoResult) -> None:
    section(con, "[bold]summary[/]")
    out = Table(show_lines=True)
    for col, width in (("attack", 34), ("control", 30), ("outcome", 11), ("evidence", 60)):
        out.add_column(col, max_width=width, overflow="fold")
    for attempt in result.attempts:
        row = attempt.row
        out.add_row(Text(row.attack), Text(row.control),
                    Text(row.outcome, style=_STYLE[attempt.outcome]), Text(row.evidence))
    con.print(_fold(out))
    for error in result.errors:
        con.print(Text("error: " + error, style="bold red"))
    caught = sum(a.outcome is Outcome.CAUGHT for a in result.attempts)
    missed = sum(a.outcome is Outcome.MISSED for a in result.attempts)
    pending = sum(a.outcome is Outcome.UNAVAILABLE for a in result.attempts)
    con.print(f"{caught} caught, {missed} missed, {pending} not available yet; production "
              + ("[green]still serves the last good models[/]" if result.serving_ok
                 else "[bold red]does NOT serve the last good models[/]"))
    con.print("[bold green]OK[/]" if result.ok else "[bold red]NOT OK[/]")


def _entry_point_off_path() -> Path | None:
    """This installation's ``chainproof`` entry point when typing ``chainproof`` would not run
    it (after ``make demo`` it lives in .venv/bin, not on PATH until the venv is activated);
    None when ``chainproof`` on PATH is this installation, or there is no entry point beside
    this interpreter (running from a source tree)."""
    exe = Path(sys.executable).parent / "chainproof"
    if not exe.exists():
        return None
    found = shutil.which("chainproof")
    if found is not None and Path(found).resolve() == exe.resolve():
        return None
    return exe


def chainproof_command() -> str:
    """What the user can type to run chainproof: ``chainproof`` when that is this installation
    on PATH, else the entry point's full path."""
    exe = _entry_point_off_path()
    return "chainproof" if exe is None else shlex.quote(str(exe))


def explore_hint(project: Path | str, identity: str) -> str:
    """The demo's closing hint: a command line the user can paste as it is."""
    line = (f"explore it: cd {shlex.quote(str(project))} && CHAINPROOF_IDENTITY="
            f"{shlex.quote(identity)} {chainproof_command()} ls")
    exe = _entry_point_off_path()
    if exe is not None:
        line += (f"   (or `source {shlex.quote(str(exe.parent / 'activate'))}` to have "
                 "`chainproof` on your PATH)")
    return line


def section(con: Console, title: str, *, style: str = "rule.line") -> None:
    """A section rule whose title is never cut ("a feature job silently changes a
    transformation…"): a title too long for the terminal goes on its own line(s) under a plain
    rule, wrapped rather than truncated."""
    text = Text.from_markup(title)
    if text.cell_len <= con.width - 4:
        con.rule(title, style=style)
        return
    con.rule(style=style)
    con.print(text, soft_wrap=False, overflow="fold")


__all__ = ["actors", "assets", "banner", "chainproof_command", "explain", "explore_hint",
           "models", "predictions", "section", "summary"]
