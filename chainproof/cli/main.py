"""The ``chainproof`` command line (Typer + Rich).

Exit codes: 0 ok; 1 a verification or policy check failed; 2 bad input or usage. Every read
command takes ``--json``. Commands are thin: parse, call the service, render.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from chainproof.errors import BadInputError, ChainproofError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Signed, tamper-evident provenance for the whole ML pipeline.")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log.")
db_app = typer.Typer(no_args_is_help=True, help="The metadata database.")
identity_app = typer.Typer(no_args_is_help=True, help="People and service accounts.")
key_app = typer.Typer(no_args_is_help=True, help="Signing keys (private keys stay with you).")
trust_app = typer.Typer(no_args_is_help=True, help="The trust policy for provenance.")
attest_app = typer.Typer(no_args_is_help=True, help="Signed attestations.")
model_app = typer.Typer(no_args_is_help=True, help="OpenSSF Model Signing compatible "
                                                   "signatures.")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
app.add_typer(identity_app, name="identity")
app.add_typer(key_app, name="key")
app.add_typer(trust_app, name="trust")
app.add_typer(attest_app, name="attest")
app.add_typer(model_app, name="model")
role_app = typer.Typer(no_args_is_help=True, help="Roles per namespace.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens for the team server.")
namespace_app = typer.Typer(no_args_is_help=True, help="Governed or experiment namespaces.")
registry_app = typer.Typer(no_args_is_help=True, help="Registered models, versions, aliases.")
policy_app = typer.Typer(no_args_is_help=True, help="The promotion policy.")
app.add_typer(role_app, name="role")
app.add_typer(token_app, name="token")
app.add_typer(namespace_app, name="namespace")
app.add_typer(registry_app, name="registry")
app.add_typer(policy_app, name="policy")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


@app.callback()
def _global(
    server: Annotated[str | None, typer.Option(help="Team server URL (or CHAINPROOF_SERVER).")
                      ] = None,
    token: Annotated[str | None, typer.Option(help="API token (or CHAINPROOF_TOKEN).")] = None,
) -> None:
    """Signed, tamper-evident provenance for the whole ML pipeline."""
    import os

    if server:
        os.environ["CHAINPROOF_SERVER"] = server
    if token:
        os.environ["CHAINPROOF_TOKEN"] = token


def _open() -> Any:
    """The embedded workspace, or the team server when CHAINPROOF_SERVER is set: the same
    operations either way."""
    import os

    server = os.environ.get("CHAINPROOF_SERVER")
    if server:
        from chainproof.client import RemoteChainproof

        return RemoteChainproof(server, os.environ.get("CHAINPROOF_TOKEN", ""))
    from chainproof.service import Chainproof

    return Chainproof.open()


# --- workspace and assets -------------------------------------------------------------------------


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Folder to create .chainproof/ in.")] = Path("."),
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the "
                                                "workspace).")] = None,
    store: Annotated[str | None, typer.Option(help="Object store: a path or s3://bucket/prefix."
                                              )] = None,
) -> None:
    """Create a workspace: database, object store, and the log's checkpoint key."""
    from chainproof.service import Chainproof

    with Chainproof.init(path, db=db, store=store) as cp:
        out.print(f"[green]initialised[/] chainproof workspace in {path.resolve() / '.chainproof'}")
        out.print(f"  database: {cp.settings.db_url}\n  store:    {cp.settings.store}")
        out.print(f"  log key:  {cp.settings.log_key_path} (keep it private; log.pub verifies)")


@app.command()
def add(
    path: Annotated[Path, typer.Argument(help="File or directory to register.")],
    kind: Annotated[str, typer.Option(help="dataset, labels, features, code, notebook, "
                                           "environment, model, metrics, report, schema")],
    name: Annotated[str, typer.Option(help="Asset name.")],
    namespace: Annotated[str, typer.Option(help="Namespace.")] = "default",
    json_out: JsonOpt = False,
) -> None:
    """Register a file or directory as a new immutable, content-addressed version."""
    from chainproof.lineage.graph import version_dict

    with _open() as cp:
        result = cp.add(path, kind=kind, name=name, namespace=namespace)
    if json_out:
        emit_json({"created": result.created, **version_dict(result.version)})
        return
    verb = "added" if result.created else "unchanged, already"
    out.print(f"[green]{verb}[/] {result.version.ref}  {result.version.digest}")


def _parse_output(text: str) -> Any:
    from chainproof.records.assets import AssetKind
    from chainproof.service import OutputSpec

    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise BadInputError(f"--output {text!r} is not PATH:KIND:NAME",
                            hint="e.g. --output model.joblib:model:fraud-review-model")
    return OutputSpec(Path(parts[0]), AssetKind.parse(parts[1]), parts[2])


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    command: Annotated[list[str], typer.Argument(help="The command, after `--`.")],
    step: Annotated[str, typer.Option("--step", help="Step kind, e.g. features, train.")],
    inputs: Annotated[list[str] | None, typer.Option("--input", help="NAME@VERSION input.")
                      ] = None,
    outputs: Annotated[list[str] | None, typer.Option("--output", help="PATH:KIND:NAME output.")
                       ] = None,
    code: Annotated[list[Path] | None, typer.Option("--code", help="Code file or folder the "
                                                    "step runs; registered as a code input.")
                    ] = None,
    namespace: Annotated[str, typer.Option(help="Namespace.")] = "default",
    json_out: JsonOpt = False,
) -> None:
    """Run a command as a recorded step: inputs verified, outputs stored, lineage kept."""
    from chainproof.lineage.graph import step_dict, version_dict

    specs = [_parse_output(o) for o in outputs or []]
    with _open() as cp:
        result = cp.run(kind=step, command=command, inputs=inputs or [], outputs=specs,
                        code=code or [], namespace=namespace)
    if json_out:
        emit_json({"step": step_dict(result.step),
                   "outputs": [version_dict(v) for v in result.outputs]})
        return
    out.print(f"[green]recorded[/] step {step} {result.step.id}")
    for version in result.outputs:
        out.print(f"  output {version.ref}  {version.digest}")


@app.command("ls")
def list_assets(
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List asset versions."""
    from chainproof.lineage.graph import version_dict

    with _open() as cp:
        versions = cp.all_versions(namespace=namespace, kind=kind)
    if json_out:
        emit_json([version_dict(v) for v in versions])
        return
    table = Table("ref", "kind", "digest", "size", "created", "by")
    for v in versions:
        table.add_row(v.ref, v.kind.value, v.digest[:19] + "…", f"{v.size:,}", v.created_at,
                      v.created_by)
    out.print(table)


@app.command()
def show(ref: Annotated[str, typer.Argument(help="NAME[@VERSION]")], json_out: JsonOpt = False
         ) -> None:
    """Show one version: digest, producer step, consumers, sibling versions."""
    with _open() as cp:
        info = cp.show(ref)
    if json_out:
        emit_json(info)
        return
    v = info["version"]
    out.print(f"[bold]{v['ref']}[/] ({v['kind']})\n  digest  {v['digest']}\n  size    "
              f"{v['size']:,} bytes\n  media   {v['media_type']}\n  created {v['created_at']} "
              f"by {v['created_by']}")
    if info["producer"]:
        p = info["producer"]
        out.print(f"  produced by step {p['kind']} {p['id']} ({p['identity']}) from "
                  f"{', '.join(p['inputs']) or 'no inputs'}")
    out.print(f"  consumed by {len(info['consumed_by'])} step(s); versions: "
              + ", ".join(str(x["version"]) for x in info["versions"]))


@app.command()
def lineage(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION]")],
    upstream: Annotated[bool, typer.Option("--upstream", help="Where it came from (default).")
                        ] = False,
    downstream: Annotated[bool, typer.Option("--downstream", help="What was made from it.")
                          ] = False,
    json_out: JsonOpt = False,
    dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz source.")] = False,
) -> None:
    """Show the lineage graph of a version."""
    if upstream and downstream:
        raise BadInputError("choose one of --upstream and --downstream")
    direction = "downstream" if downstream else "upstream"
    with _open() as cp:
        graph = cp.lineage(ref, direction=direction)
    if json_out:
        emit_json(graph.to_dict())
        return
    if dot:
        sys.stdout.write(graph.to_dot())
        return
    out.print(_render_tree(graph))


def _render_tree(graph: Any) -> Tree:
    root = graph.versions[graph.root]
    tree = Tree(f"[bold]{root.ref}[/] ({root.kind.value}) {root.digest[:19]}…")
    children: dict[str, list[str]] = {}
    for a, b in graph.edges:
        if graph.direction == "upstream":
            children.setdefault(b, []).append(a)
        else:
            children.setdefault(a, []).append(b)
    seen: set[str] = set()

    def walk(node: str, branch: Tree, depth: int) -> None:
        for child in sorted(children.get(node, [])):
            if child in graph.steps:
                s = graph.steps[child]
                label = f"[cyan]step {s.kind}[/] by {s.identity} ({s.status.value}) {s.id[:12]}"
            else:
                v = graph.versions[child]
                label = f"{v.ref} ({v.kind.value}) {v.digest[:19]}…"
            if child in seen:
                branch.add(label + " [dim](shown above)[/]")
                continue
            seen.add(child)
            walk(child, branch.add(label), depth + 1)

    start = root.producer_step if graph.direction == "upstream" else root.ref
    if graph.direction == "upstream" and start:
        s = graph.steps[start]
        walk(start, tree.add(f"[cyan]step {s.kind}[/] by {s.identity} ({s.status.value}) "
                             f"{s.id[:12]}"), 1)
    elif graph.direction == "downstream":
        walk(root.ref, tree, 0)
    return tree


@app.command()
def explain(
    ref: Annotated[str, typer.Argument(help="MODEL@VERSION")],
    json_out: JsonOpt = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip re-hashing bytes.")
                         ] = False,
) -> None:
    """Answer: which data, code, steps, identities, environments and metrics made this."""
    with _open() as cp:
        answer = cp.explain(ref, verify=not no_verify)
    if json_out:
        emit_json(answer)
    else:
        _render_explain(answer)
    if answer["verified"] is False:
        raise typer.Exit(1)


def _status_style(status: str) -> str:
    if status == "verified":
        return "[green]verified[/]"
    if status == "not checked":
        return "[yellow]not checked[/]"
    return f"[red]{status}[/]"


def _render_explain(answer: dict[str, Any]) -> None:
    s = answer["subject"]
    out.print(f"[bold]{s['ref']}[/] ({s['kind']})  {s['digest']}  {_status_style(s['status'])}")
    sections = [("Which data and label versions?", answer["data"]),
                ("Which feature and training code?", answer["code"]),
                ("Intermediate assets", answer["intermediates"]),
                ("Which metrics?", answer["metrics"]),
                ("Which reports?", answer["reports"])]
    for title, items in sections:
        table = Table("ref", "kind", "digest", "by", "status", title=title, title_justify="left")
        for x in items:
            label = x["ref"]
            if x.get("used_by_steps"):
                label += f" (used by {', '.join(x['used_by_steps'])})"
            table.add_row(label, x["kind"], x["digest"][:23] + "…", x["created_by"],
                          _status_style(x["status"]))
            if x.get("values") and isinstance(x["values"], dict):
                vals = ", ".join(f"{k}={v}" for k, v in sorted(x["values"].items())
                                 if isinstance(v, int | float))
                table.add_row("", "", vals, "", "")
        out.print(table if items else f"[bold]{title}[/] none recorded")
    table = Table("step", "identity", "status", "when", "environment", "code revision",
                  title="Which steps ran it, as whom, where?", title_justify="left")
    for st in answer["steps"]:
        env = st["environment"]
        rev = st["code_revision"] or {}
        commit = (rev.get("commit") or "no git")[:12] + (" dirty" if rev.get("dirty") else "")
        table.add_row(f"{st['kind']} {st['id'][:12]}", st["identity"], st["status"],
                      st["started_at"], f"py{env.get('python')} {env.get('hostname')}", commit)
    out.print(table)
    if answer["unexplained_inputs"]:
        out.print("[red]inputs with no recorded origin:[/] "
                  + ", ".join(answer["unexplained_inputs"]))
    if answer["verified"]:
        out.print("[green]every link's bytes re-hashed and matched[/]")
    elif answer["verified"] is False:
        out.print("[red]verification FAILED for at least one link[/]")


@app.command()
def verify(
    ref: Annotated[str | None, typer.Argument(help="NAME@VERSION (or use --all)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Re-hash every stored version.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Verify a version's bytes and its whole signed provenance chain under the trust policy
    (exit 1 on any failure); --all re-hashes every stored version."""
    if not ref and not all_:
        raise BadInputError("name a version or pass --all", hint="chainproof verify model@1")
    with _open() as cp:
        if all_:
            versions = cp.verify(None)
            if json_out:
                emit_json({"ok": True, "verified": [v.ref for v in versions]})
            else:
                out.print(f"[green]verified[/] {len(versions)} version(s): stored bytes match "
                          "their digests")
            return
        from chainproof.errors import ProvenanceError

        try:
            report = cp.verify_chain(ref)
        except ProvenanceError as exc:
            report = getattr(exc, "report", None)
            if report is not None:
                if json_out:
                    emit_json(report.to_dict())
                else:
                    _render_chain(report)
            raise
    if json_out:
        emit_json(report.to_dict())
    else:
        _render_chain(report)


def _render_chain(report: Any) -> None:
    table = Table("link", "kind", "signed by", "result", title=f"provenance of {report.target} "
                  f"(trust policy v{report.policy_version})", title_justify="left")
    for link in report.links:
        result = ("[green]ok[/]: " + "; ".join(link.checks) if not link.problems
                  else "[red]FAILED[/]: " + "; ".join(link.problems))
        table.add_row(link.ref, link.kind, link.signer or "(source)", result)
    out.print(table)
    if report.ok:
        out.print(f"[green]verified chain of {len(report.links)} links[/]")


@app.command()
def digest(
    path: Annotated[Path, typer.Argument(help="File or directory.")],
    algorithm: Annotated[str, typer.Option(help="sha256 or blake3")] = "sha256",
    json_out: JsonOpt = False,
) -> None:
    """Print a file's or directory's digest without storing anything (like sha256sum)."""
    from chainproof.digest import digest_path

    result = digest_path(path, algorithm=algorithm)
    if json_out:
        value: dict[str, Any] = {"path": str(path), "digest": f"{algorithm}:{result.digest}",
                                 "size": result.size, "is_directory": result.is_directory}
        if result.manifest is not None:
            value["manifest"] = json.loads(result.manifest.canonical_bytes())
        emit_json(value)
        return
    sys.stdout.write(f"{algorithm}:{result.digest}  {path}\n")


@app.command()
def validate(
    ref: Annotated[str, typer.Argument(help="DATASET@VERSION to check.")],
    reference: Annotated[str | None, typer.Option(help="Reference DATASET@VERSION (default: "
                                                       "the previous version).")] = None,
    schema: Annotated[str | None, typer.Option(help="Schema YAML: a file or a schema asset.")
                      ] = None,
    label: Annotated[str | None, typer.Option(help="Label column (label shift and label-flip "
                                                   "suspicion).")] = None,
    key: Annotated[list[str] | None, typer.Option(help="Key column(s) that must be unique.")
                   ] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")
                    ] = None,
    no_record: Annotated[bool, typer.Option("--no-record", help="Do not store the report.")
                         ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Validate a dataset version: schema contract, drift against a reference, label shift and
    poisoning suspicion. Records a signed report (promotion evidence); exit 1 on failure."""
    with _open() as cp:
        report, recorded, used = cp.validate(ref, reference=reference, schema=schema,
                                             label_column=label, key_columns=key or [],
                                             record=not no_record)
    if html is not None:
        html.write_text(report.to_html(), encoding="utf-8")
    if json_out:
        emit_json({**report.to_dict(), "reference": used,
                   "recorded_as": recorded.ref if recorded else None})
    else:
        status = "[green]passed[/]" if report.passed else "[red]FAILED[/]"
        out.print(f"validation of {ref} against {used or 'no reference'}: {status}")
        for problem in report.problems:
            out.print(f"  - {problem}", highlight=False)
        if recorded is not None:
            out.print(f"recorded signed validation report {recorded.ref}")
        if html is not None:
            out.print(f"HTML report: {html}")
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="MODEL@ALIAS, e.g. fraud-review@production")],
    dest: Annotated[Path, typer.Argument(help="Where to put the verified bytes.")],
    allow_override: Annotated[bool, typer.Option(help="Accept a break-glass promotion.")
                              ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Fetch exactly the bytes a promotion approved, after re-verifying decision, approvals,
    provenance, scan and digest (exit 1 with the reason if any check fails)."""
    if dest.exists():
        raise BadInputError(f"{dest} already exists", hint="pull into a new path")
    with _open() as cp:
        loaded = cp.load_model(ref, allow_override=allow_override, dest=dest)
    if json_out:
        emit_json(loaded.to_dict())
        return
    for check in loaded.checks:
        out.print(f"  [green]✓[/] {check}")
    out.print(f"[green]pulled[/] {loaded.model}@{loaded.alias} = version {loaded.version} "
              f"({loaded.digest}) to {loaded.path}")


@app.command()
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


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8700,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run the team server over this workspace's (or CHAINPROOF_DB / CHAINPROOF_STORE's)
    database and store. Stateless: run as many as you like on one database."""
    import os

    import uvicorn

    os.environ.pop("CHAINPROOF_SERVER", None)
    uvicorn.run("chainproof.api.factory:app", host=host, port=port, workers=workers,
                factory=True, log_level="info")


@app.command()
def serve(
    refs: Annotated[list[str], typer.Argument(help="MODEL@ALIAS to serve (one or more).")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    poll: Annotated[float, typer.Option(help="Seconds between alias checks.")] = 5.0,
    allow_override: Annotated[bool, typer.Option(help="Serve break-glass promotions too.")
                              ] = False,
) -> None:
    """Run the reference prediction service: /predict/{model} and /status, serving only
    verified models and swapping atomically when an alias moves and the new model verifies."""
    import uvicorn

    from chainproof.serve.app import create_app
    from chainproof.service import Chainproof
    from chainproof.workspace import load_settings

    settings = load_settings()
    app_ = create_app(lambda: Chainproof.open(settings), refs, poll_seconds=poll,
                      allow_override=allow_override)
    uvicorn.run(app_, host=host, port=port, log_level="info")


@app.command()
def scan(
    target: Annotated[str, typer.Argument(help="A file or folder, or a model asset NAME@VERSION "
                                               "(then a signed scan report is recorded).")],
    allowlist: Annotated[Path | None, typer.Option(help="Extra allowlist YAML (your own "
                                                        "classes).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Statically scan model files (pickle, joblib, PyTorch, numpy, safetensors, ONNX) against
    an allowlist: exit 0 clean, 1 findings, 2 unreadable or malformed."""
    from chainproof.scan import load_allowlist, scan_path

    rules = load_allowlist(allowlist)
    path = Path(target)
    recorded = None
    if path.exists():
        report = scan_path(path, allowlist=rules)
    else:
        with _open() as cp:
            version = cp.resolve(target)
            local = cp.materialize(version)
            report = scan_path(local, allowlist=rules)
            recorded = cp.record_report(report_kind="scan", subjects=[version.ref],
                                        report=report.to_dict(), passed=report.clean,
                                        name=f"{version.name}-scan", namespace=version.namespace)
    if json_out:
        emit_json({**report.to_dict(), "recorded_as": recorded.ref if recorded else None})
    else:
        _render_scan(report)
        if recorded is not None:
            out.print(f"recorded signed scan report {recorded.ref}")
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _render_scan(report: Any) -> None:
    table = Table("file", "format", "verdict", "findings")
    for f in report.files:
        style = {"clean": "green", "malicious": "red"}.get(f.verdict, "yellow")
        detail = "; ".join(f"{x.module}.{x.name} @{x.offset} ({x.reason})" for x in f.findings[:3])
        if len(f.findings) > 3:
            detail += f"; +{len(f.findings) - 3} more"
        table.add_row(str(f.path), f.format, f"[{style}]{f.verdict}[/]", detail or (f.error or ""))
    out.print(table)


# --- audit ----------------------------------------------------------------------------------------


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
    with _open() as cp:
        report = cp.audit_verify(notes)
    if json_out:
        emit_json(report.to_dict())
        return
    out.print(f"[green]audit log verified[/]: {report.size} entries, root {report.root_hash}, "
              f"newest checkpoint at size {report.checkpoint_size}, "
              f"{report.witnesses_checked} witnessed checkpoint(s) consistent; "
              + ", ".join(f"{n} {t}" for t, n in report.rows_checked.items())
              + " match the log")


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
    with _open() as cp:
        entries = cp.audit_log(action=action, actor=actor, obj=obj, limit=limit)
    if json_out:
        emit_json(entries)
        return
    table = Table("seq", "time", "actor", "action", "object")
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

    with _open() as cp:
        latest = cp.latest_checkpoint()
    if out_file is not None:
        with out_file.open("a", encoding="utf-8") as fh:
            fh.write(checkpoint.format_checkpoint_file([latest["note"]]))
        out.print(f"appended checkpoint at size {latest['size']} to {out_file}")
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
    with _open() as cp:
        emit_json(cp.prove(seq, size))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to this version's schema."""
    from chainproof.db import open_engine, upgrade
    from chainproof.workspace import load_settings

    settings = load_settings()
    upgrade(open_engine(settings.db_url))
    out.print("[green]database schema is current[/]")


# --- identities, keys, trust, attestations, model signing ---------------------------------------


@identity_app.command("create")
def identity_create(
    name: Annotated[str, typer.Argument(help="Identity name, e.g. svc-trainer.")],
    kind: Annotated[str, typer.Option(help="person or service")] = "person",
) -> None:
    """Create an identity (logged)."""
    with _open() as cp:
        cp.create_identity(name, kind)
    out.print(f"[green]created[/] identity {name} ({kind})")


@key_app.command("generate")
def key_generate(
    out_path: Annotated[Path, typer.Option("--out", help="Private key file to create (0600).")],
    passphrase_env: Annotated[str | None, typer.Option(
        help="Encrypt with the passphrase in this environment variable.")] = None,
) -> None:
    """Make an ECDSA P-256 key pair: PKCS#8 PEM private key, and PUBLIC beside it."""
    import os

    from chainproof import identities

    passphrase = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            raise BadInputError(f"environment variable {passphrase_env} is empty")
        passphrase = value.encode()
    keyid = identities.generate_key_file(out_path, passphrase)
    out.print(f"[green]generated[/] key {keyid}\n  private: {out_path} (keep it; never "
              f"upload it)\n  public:  {identities.public_path(out_path)}")


@key_app.command("register")
def key_register(
    identity: Annotated[str, typer.Argument()],
    public_key: Annotated[Path, typer.Argument(help="Public key PEM.")],
) -> None:
    """Register an identity's public key (logged)."""
    with _open() as cp:
        keyid = cp.register_key(identity, _read(public_key))
    out.print(f"[green]registered[/] key {keyid} for {identity}")


@key_app.command("rotate")
def key_rotate(
    identity: Annotated[str, typer.Argument()],
    public_key: Annotated[Path, typer.Argument(help="The new public key PEM.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "rotated",
) -> None:
    """Register a new key and revoke the identity's active keys, atomically."""
    with _open() as cp:
        keyid = cp.rotate_key(identity, _read(public_key), reason)
    out.print(f"[green]rotated[/] {identity} to key {keyid}")


@key_app.command("revoke")
def key_revoke(
    keyid: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why (required).")],
) -> None:
    """Revoke a key: signatures made after now are invalid; earlier ones stay valid."""
    with _open() as cp:
        cp.revoke_key(keyid, reason)
    out.print(f"[yellow]revoked[/] key {keyid}")


@key_app.command("list")
def key_list(identity: Annotated[str | None, typer.Option()] = None,
             json_out: JsonOpt = False) -> None:
    """List registered keys."""
    with _open() as cp:
        rows = cp.key_list(identity)
    if json_out:
        emit_json(rows)
        return
    table = Table("keyid", "identity", "registered", "revoked")
    for r in rows:
        table.add_row(r["keyid"][:24] + "…", r["identity"], r["registered_at"],
                      f"{r['revoked_at']} ({r['revoked_reason']})" if r["revoked_at"] else "")
    out.print(table)


@trust_app.command("show")
def trust_show(json_out: JsonOpt = False) -> None:
    """Print the trust policy in force."""
    with _open() as cp:
        version, document = cp.trust_document()
    if json_out:
        emit_json({"version": version, "document": document})
        return
    if document is None:
        out.print("# built-in default: any registered identity may attest any step; every "
                  "signature, key and digest is still checked")
        document = 'namespaces:\n  "*":\n    steps:\n      "*": {signers: ["*"], inputs: ["*"]}\n'
    sys.stdout.write(document)


@trust_app.command("set")
def trust_set(file: Annotated[Path, typer.Argument(help="Policy YAML.")]) -> None:
    """Set a new version of the trust policy (an admin action, logged)."""
    with _open() as cp:
        version = cp.set_trust_policy(_read(file).decode())
    out.print(f"[green]trust policy v{version} in force[/]")


@attest_app.command("export")
def attest_export(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    out_file: Annotated[Path | None, typer.Option("--out", help=".intoto.jsonl to write")
                        ] = None,
) -> None:
    """Export the DSSE envelopes of the version's whole upstream chain as .intoto.jsonl."""
    with _open() as cp:
        envelopes = cp.export_attestations(ref)
    text = "".join(json.dumps(json.loads(e), separators=(",", ":")) + "\n" for e in envelopes)
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text)
        out.print(f"wrote {len(envelopes)} attestation(s) to {out_file}")


@model_app.command("sign")
def model_sign(
    model_dir: Annotated[Path, typer.Argument(help="Model directory or file.")],
    key: Annotated[Path, typer.Option(help="Private key PEM (P-256).")],
    signature: Annotated[Path, typer.Option(help="Bundle to write, e.g. model.sig.")],
    ignore: Annotated[list[str] | None, typer.Option(help="Path to leave out.")] = None,
) -> None:
    """Sign a model as OpenSSF model_signing does (Sigstore bundle v0.3, DSSE, in-toto)."""
    import os

    from chainproof.attest import load_private_key, sign_model

    passphrase = os.environ.get("CHAINPROOF_KEY_PASSPHRASE")
    private = load_private_key(_read(key), passphrase.encode() if passphrase else None)
    sign_model(model_dir, private, signature, ignore_paths=_ignores(model_dir, ignore))
    out.print(f"[green]signed[/] {model_dir} -> {signature}")


@model_app.command("verify")
def model_verify(
    model_dir: Annotated[Path, typer.Argument(help="Model directory or file.")],
    signature: Annotated[Path, typer.Option(help="Bundle, e.g. model.sig.")],
    public_key: Annotated[list[Path], typer.Option(help="Trusted public key PEM (repeat).")],
    ignore: Annotated[list[str] | None, typer.Option(help="Path to leave out.")] = None,
    threshold: Annotated[int, typer.Option(help="Distinct valid signatures needed.")] = 1,
) -> None:
    """Verify an OpenSSF model signature (from chainproof or model_signing); exit 1 if not."""
    from chainproof.attest import load_public_key, verify_model

    keys = [load_public_key(_read(p)) for p in public_key]
    result = verify_model(model_dir, signature, keys, ignore_paths=_ignores(model_dir, ignore),
                          threshold=threshold)
    out.print(f"[green]verified[/] {model_dir}: {len(result.resources)} resources match the "
              f"signed manifest (root {result.root_digest[:16]}…, signed by "
              f"{len(result.signer_key_ids)} key(s))")


@role_app.command("grant")
def role_grant(identity: Annotated[str, typer.Argument()], role: Annotated[str, typer.Argument()],
               namespace: Annotated[str, typer.Option(help="Namespace or glob.")]) -> None:
    """Grant a role in a namespace (admin, logged)."""
    with _open() as cp:
        cp.grant_role(identity, role, namespace)
    out.print(f"[green]granted[/] {role} in {namespace} to {identity}")


@role_app.command("revoke")
def role_revoke(identity: Annotated[str, typer.Argument()],
                role: Annotated[str, typer.Argument()],
                namespace: Annotated[str, typer.Option(help="Namespace or glob.")]) -> None:
    """Revoke a role (admin, logged)."""
    with _open() as cp:
        cp.revoke_role(identity, role, namespace)
    out.print(f"[yellow]revoked[/] {role} in {namespace} from {identity}")


@role_app.command("list")
def role_list(json_out: JsonOpt = False) -> None:
    """List every grant."""
    with _open() as cp:
        rows = cp.role_list()
    if json_out:
        emit_json(rows)
        return
    table = Table("identity", "role", "namespace", "granted", "by")
    for r in rows:
        table.add_row(r["identity"], r["role"], r["namespace"], r["granted_at"], r["granted_by"])
    out.print(table)


@namespace_app.command("set")
def namespace_set(name: Annotated[str, typer.Argument()],
                  mode: Annotated[str, typer.Option(help="governed or experiment")]) -> None:
    """Make a namespace governed (each role its part) or an experiment sandbox."""
    with _open() as cp:
        cp.set_namespace_mode(name, mode)
    out.print(f"[green]namespace {name} is {mode}[/]")


def _duration(text: str) -> Any:
    import re
    from datetime import timedelta

    match = re.fullmatch(r"(\d+)([dh])", text)
    if not match:
        raise BadInputError(f"--expires {text!r} is not a duration", hint="e.g. 30d or 12h")
    n = int(match.group(1))
    return timedelta(days=n) if match.group(2) == "d" else timedelta(hours=n)


@token_app.command("create")
def token_create(identity: Annotated[str, typer.Argument()],
                 expires: Annotated[str, typer.Option(help="Lifetime, e.g. 30d.")] = "30d",
                 json_out: JsonOpt = False) -> None:
    """Create an API token for an identity. It is shown once and stored only as a hash."""
    with _open() as cp:
        token_id, token = cp.create_token(identity, _duration(expires))
    if json_out:
        emit_json({"id": token_id, "identity": identity, "token": token})
        return
    out.print(f"token {token_id} for {identity} (shown once; store it in a secret manager):")
    sys.stdout.write(token + "\n")


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a token now."""
    with _open() as cp:
        cp.revoke_token(token_id)
    out.print(f"[yellow]revoked[/] token {token_id}")


@registry_app.command("create")
def registry_create(model: Annotated[str, typer.Argument(help="[NAMESPACE/]MODEL")]) -> None:
    """Register a model name."""
    with _open() as cp:
        cp.create_model(model)
    out.print(f"[green]registered model[/] {model}")


@registry_app.command("register")
def registry_register(
        model: Annotated[str, typer.Argument(help="[NAMESPACE/]MODEL")],
        asset: Annotated[str | None, typer.Argument(
            help="Model asset NAME@VERSION (or use --file)")] = None,
        file: Annotated[Path | None, typer.Option(
            "--file", help="Store this model file or directory and register it, in one "
                           "transaction")] = None,
        asset_name: Annotated[str | None, typer.Option(
            help="With --file: the model asset's name (default: the model's name)")] = None,
        json_out: JsonOpt = False) -> None:
    """Pin a model asset version (by digest) as the model's next version."""
    if (asset is None) == (file is None):
        raise BadInputError("give either a model asset NAME@VERSION or --file PATH",
                            hint="chainproof registry register fraud-model model.pkl@3, or "
                                 "chainproof registry register fraud-model --file model.pkl")
    with _open() as cp:
        if file is not None:
            result = cp.register_model_file(model, file, asset_name=asset_name)
            version, asset = result.version, result.asset.ref
        else:
            assert asset is not None
            version = cp.register_model_version(model, asset)
    if json_out:
        emit_json({"model": model, "version": version, "asset": asset})
        return
    out.print(f"[green]registered[/] {model} version {version} = {asset}")


@registry_app.command("versions")
def registry_versions(model: Annotated[str, typer.Argument()], json_out: JsonOpt = False
                      ) -> None:
    """Versions, aliases and the alias history of a model (overrides marked)."""
    with _open() as cp:
        info = cp.model_versions(model)
    if json_out:
        emit_json(info)
        return
    table = Table("version", "asset", "digest", "by", "aliases", title=info["model"])
    for v in info["versions"]:
        table.add_row(str(v["version"]), v["asset"], v["digest"][:23] + "…", v["created_by"],
                      ", ".join(v["aliases"]))
    out.print(table)
    hist = Table("when", "alias", "from", "to", "by", "decision", title="alias history")
    for h in info["history"]:
        decision = ("[red]BREAK-GLASS OVERRIDE[/]: " + (h["reason"] or "")) if h["override"] \
            else (h["decision"] or "direct move (unprotected alias)")
        hist.add_row(h["moved_at"], h["alias"], str(h["from_version"] or "-"),
                     str(h["to_version"]), h["moved_by"], decision)
    out.print(hist)


@registry_app.command("alias")
def registry_alias(model: Annotated[str, typer.Argument()],
                   version: Annotated[int, typer.Argument()],
                   alias: Annotated[str, typer.Argument()]) -> None:
    """Move an unprotected alias (protected ones move only through `promote`)."""
    with _open() as cp:
        cp.set_alias(model, version, alias)
    out.print(f"[green]{model}@{alias}[/] -> version {version}")


@registry_app.command("requests")
def registry_requests(status: Annotated[str | None, typer.Option(help="pending, rejected, "
                                                                     "executed")] = None,
                      json_out: JsonOpt = False) -> None:
    """Promotion requests and their reviews."""
    with _open() as cp:
        rows = cp.promotion_requests(status)
    if json_out:
        emit_json(rows)
        return
    table = Table("id", "model", "version", "alias", "status", "requested by", "reviews")
    for r in rows:
        table.add_row(r["id"], r["model"], str(r["version"]), r["alias"], r["status"],
                      r["requested_by"], ", ".join(f"{x['approver']}:{x['decision']}"
                                                   for x in r["reviews"]))
    out.print(table)


def _model_version(ref: str) -> tuple[str, int]:
    model, at, version = ref.rpartition("@")
    if not at or not version.isdigit():
        raise BadInputError(f"{ref!r} is not MODEL@VERSION", hint="e.g. fraud-review@3")
    return model, int(version)


def _render_gate(gate: Any) -> None:
    table = Table("rule", "result", "why", title=f"{gate.model}@{gate.version} -> {gate.alias} "
                  f"(promotion policy v{gate.policy_version})", title_justify="left")
    for o in gate.outcomes:
        table.add_row(o.rule, "[green]pass[/]" if o.passed else "[red]FAIL[/]", o.detail)
    out.print(table)


@app.command()
def promote(
    ref: Annotated[str, typer.Argument(help="MODEL@VERSION")],
    to: Annotated[str, typer.Option("--to", help="Target alias.")],
    force: Annotated[bool, typer.Option(help="Break-glass override (admin; needs --reason)."
                                        )] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required with --force).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Open a promotion request (and show each rule's current result), or force one."""
    model, version = _model_version(ref)
    with _open() as cp:
        if force:
            if not reason:
                raise BadInputError("--force needs --reason", hint='--reason "incident 4711"')
            gate, decision = cp.force_promotion(model, version, to, reason)
            if json_out:
                emit_json({"decision": decision, **gate.to_dict(), "override": True})
                return
            _render_gate(gate)
            out.print(f"[red]BREAK-GLASS[/]: {model}@{to} -> {version} by override "
                      f"(decision {decision}); this is recorded in the log and every listing")
            return
        request_id = cp.request_promotion(model, version, to)
        gate = cp.check_request(request_id)
    if json_out:
        emit_json(gate.to_dict())
        return
    out.print(f"promotion request [bold]{request_id}[/] opened")
    _render_gate(gate)


@app.command()
def approve(request_id: Annotated[str, typer.Argument()],
            reason: Annotated[str | None, typer.Option(help="Optional note.")] = None) -> None:
    """Sign an approval of a promotion request with your key."""
    with _open() as cp:
        decision = cp.approve(request_id, reason)
        gate = cp.check_request(request_id) if decision is None else None
    out.print(f"[green]approved[/] {request_id}")
    if decision:
        out.print(f"policy auto-executed the promotion (decision {decision})")
    elif gate is not None:
        _render_gate(gate)


@app.command()
def reject(request_id: Annotated[str, typer.Argument()],
           reason: Annotated[str, typer.Option(help="Why (required).")]) -> None:
    """Sign a rejection of a promotion request."""
    with _open() as cp:
        cp.reject(request_id, reason)
    out.print(f"[yellow]rejected[/] {request_id}")


@app.command("execute")
def execute_cmd(request_id: Annotated[str, typer.Argument()], json_out: JsonOpt = False) -> None:
    """Execute an approved promotion: the gate is evaluated again and the decision signed."""
    from chainproof.errors import PolicyViolationError

    with _open() as cp:
        try:
            gate, decision = cp.execute_promotion(request_id)
        except PolicyViolationError as exc:
            blocked = getattr(exc, "gate", None)
            if blocked is not None and not json_out:
                _render_gate(blocked)
            raise
    if json_out:
        emit_json({"decision": decision, **gate.to_dict()})
        return
    _render_gate(gate)
    out.print(f"[green]promoted[/] {gate.model}@{gate.alias} -> {gate.version} "
              f"(decision {decision})")


@policy_app.command("show")
def policy_show(json_out: JsonOpt = False) -> None:
    """Print the promotion policy in force."""
    with _open() as cp:
        version, document = cp.promotion_policy()
    if json_out:
        emit_json({"version": version, "document": document})
        return
    sys.stdout.write(document)


@policy_app.command("set")
def policy_set(file: Annotated[Path, typer.Argument(help="Policy YAML.")]) -> None:
    """Set a new version of the promotion policy (admin, logged)."""
    with _open() as cp:
        version = cp.set_promotion_policy(_read(file).decode())
    out.print(f"[green]promotion policy v{version} in force[/]")


@policy_app.command("check")
def policy_check(ref: Annotated[str, typer.Argument(help="MODEL@VERSION")],
                 to: Annotated[str, typer.Option("--to", help="Target alias.")],
                 json_out: JsonOpt = False) -> None:
    """Dry run: evaluate every rule for a promotion without changing anything (exit 1 if it
    would be blocked)."""
    model, version = _model_version(ref)
    with _open() as cp:
        gate = cp.check_promotion(model, version, to)
    if json_out:
        emit_json(gate.to_dict())
    else:
        _render_gate(gate)
    if not gate.passed:
        raise typer.Exit(1)


def _ignores(model_dir: Path, ignore: list[str] | None) -> list[Path]:
    # model_signing's CLI takes ignore paths relative to the current folder; so do we.
    return [Path(p).resolve() for p in ignore or []]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror}",
                            hint="check the path") from None


# --- entry point ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising (tests call this directly)."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="chainproof")
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("[red]aborted[/]")
        return 130
    except click.ClickException as exc:
        exc.show(file=sys.stderr)
        return 2
    except ChainproofError as exc:
        label = "verification failed" if exc.exit_code == 1 else "error"
        err.print(f"[red]{label}:[/] {exc.message}", highlight=False)
        for problem in getattr(exc, "problems", []):
            err.print(f"  - {problem}", highlight=False)
        if exc.hint:
            err.print(f"  [yellow]hint:[/] {exc.hint}", highlight=False)
        return exc.exit_code
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
