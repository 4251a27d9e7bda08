"""Workspace and assets: ``init``, ``add``, ``run``, ``ls``, ``show``, ``lineage``, ``explain``,
``verify``, ``digest``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from chainproof.cli._common import (
    JsonOpt,
    emit_json,
    flatten_numbers,
    new_table,
    open_operations,
    out,
)
from chainproof.errors import BadInputError
from chainproof.records.names import printable

commands = typer.Typer()
step_app = typer.Typer(no_args_is_help=True, help="Recorded steps.")


@commands.command()
def init(
    path: Annotated[Path, typer.Argument(help="Folder to create .chainproof/ in (its parent "
                                              "must exist).")] = Path("."),
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the "
                                                "workspace).")] = None,
    store: Annotated[str | None, typer.Option(help="Object store: a path or s3://bucket/prefix."
                                              )] = None,
) -> None:
    """Create a workspace: database, object store, and the log's checkpoint key."""
    from chainproof.service import Chainproof
    from chainproof.workspace import CONFIG_FILE, check_workspace_folder, url_has_password

    created = check_workspace_folder(path)
    with Chainproof.init(path, db=db, store=store) as cp:
        root = path.resolve() / ".chainproof"
        if created:
            out.print(f"created folder {path.resolve()}", highlight=False)
        out.print(f"[green]initialised[/] chainproof workspace in {root}", highlight=False)
        out.print(f"  database: {_redact(cp.settings.db_url)}\n  store:    {cp.settings.store}",
                  highlight=False)
        out.print(f"  log key:  {cp.settings.log_key_path} (keep it private; log.pub verifies)",
                  highlight=False)
        out.print(f"  you:      {cp.identity} (admin of every namespace), signing key "
                  f"{cp.settings.signing_key_path}", highlight=False)
        if db and url_has_password(db):
            out.print(f"  [yellow]note:[/] {root / CONFIG_FILE} holds the database password; "
                      "it is written 0600 (only you can read it). Better: leave the password "
                      "out and set CHAINPROOF_DB on this host.", highlight=False)


def _redact(url: str) -> str:
    """A database URL without its password, for printing."""
    from chainproof.workspace import redact_url

    return redact_url(url)


@commands.command()
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

    if not path.exists() and not path.is_symlink():
        raise BadInputError(f"no such file or folder: {path}", hint="check the path")
    with open_operations() as cp:
        result = cp.add(path, kind=kind, name=name, namespace=namespace)
    if json_out:
        emit_json({"created": result.created, **version_dict(result.version)})
        return
    verb = "added" if result.created else "unchanged, already"
    out.print(f"[green]{verb}[/] {result.version.ref}  {result.version.digest}", highlight=False)


def _parse_output(text: str) -> Any:
    from chainproof.records.assets import AssetKind
    from chainproof.service import OutputSpec

    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise BadInputError(f"--output {text!r} is not PATH:KIND:NAME",
                            hint="e.g. --output model.joblib:model:fraud-review-model")
    return OutputSpec(Path(parts[0]), AssetKind.parse(parts[1]), parts[2])


@commands.command(context_settings={"allow_interspersed_args": False})
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
    """Run a command as a recorded step: inputs verified, outputs stored, lineage kept. If the
    command fails, the step is recorded as failed and chainproof exits with its status."""
    from chainproof.lineage.graph import step_dict, version_dict

    specs = [_parse_output(o) for o in outputs or []]
    for path in code or []:
        if not path.exists():
            raise BadInputError(f"--code {path}: no such file or folder", hint="check the path")
    with open_operations() as cp:
        result = cp.run(kind=step, command=command, inputs=inputs or [], outputs=specs,
                        code=code or [], namespace=namespace)
    if json_out:
        emit_json({"step": step_dict(result.step),
                   "outputs": [version_dict(v) for v in result.outputs]})
        return
    out.print(f"[green]recorded[/] step {step} {result.step.id}", highlight=False)
    for version in result.outputs:
        out.print(f"  output {version.ref}  {version.digest}", highlight=False)


@commands.command("ls")
def list_assets(
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List asset versions."""
    from chainproof.lineage.graph import version_dict

    with open_operations() as cp:
        versions = cp.all_versions(namespace=namespace, kind=kind)
    if json_out:
        emit_json([version_dict(v) for v in versions])
        return
    table = new_table("ref", "kind", "digest", "size", "created", "by")
    for v in versions:
        table.add_row(v.ref, v.kind.value, v.digest[:19] + "…", f"{v.size:,}", v.created_at,
                      v.created_by)
    out.print(table)


@commands.command()
def show(ref: Annotated[str, typer.Argument(help="NAME[@VERSION]")], json_out: JsonOpt = False
         ) -> None:
    """Show one version: digest, producer step, consumers, sibling versions."""
    with open_operations() as cp:
        info = cp.show(ref)
    if json_out:
        emit_json(info)
        return
    v = info["version"]
    out.print(f"[bold]{v['ref']}[/] ({v['kind']})\n  digest  {v['digest']}\n  size    "
              f"{v['size']:,} bytes\n  media   {v['media_type']}\n  created {v['created_at']} "
              f"by {v['created_by']}", highlight=False)
    if info["producer"]:
        p = info["producer"]
        out.print(f"  produced by step {p['kind']} {p['id']} ({p['identity']}) from "
                  f"{', '.join(p['inputs']) or 'no inputs'}", highlight=False)
    out.print(f"  consumed by {len(info['consumed_by'])} step(s); versions: "
              + ", ".join(str(x["version"]) for x in info["versions"]), highlight=False)


@step_app.command("list")
def step_list(
    namespace: Annotated[str | None, typer.Option(help="Only steps recorded in this "
                                                       "namespace.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only steps of this kind (train, "
                                                  "evaluate, scan...).")] = None,
    identity: Annotated[str | None, typer.Option(help="Only steps run by this "
                                                      "identity.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1-10000).")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List recorded steps you may read, newest first: id, kind, namespace, who, status,
    outputs."""
    from chainproof.lineage.graph import step_dict

    with open_operations() as cp:
        steps = cp.step_list(namespace=namespace, kind=kind, identity=identity, limit=limit)
    if json_out:
        emit_json([step_dict(s) for s in steps])
        return
    table = new_table("id", "kind", "namespace", "by", "status", "ended", "outputs")
    for s in steps:
        status = s.status.value if s.status.value == "succeeded" else f"[red]{s.status.value}[/]"
        table.add_row(s.id, s.kind, s.namespace, s.identity, status, s.ended_at,
                      escape(", ".join(s.outputs) or "-"))
    out.print(table)
    if not steps:
        out.print("no steps you may read match", highlight=False)


@step_app.command("show")
def step_show(step_id: Annotated[str, typer.Argument(help="Step id (from `run`, `show`, "
                                                          "`explain` or the log).")],
              json_out: JsonOpt = False) -> None:
    """Show one recorded step: kind, identity, status, command, inputs, outputs."""
    from chainproof.lineage.graph import step_dict

    with open_operations() as cp:
        step = step_dict(cp.step_record(step_id))
    if json_out:
        emit_json(step)
        return
    out.print(f"[bold]step {step['kind']}[/] {step['id']} in {step['namespace']}: "
              f"{step['status']}\n  by      {step['identity']}\n  started "
              f"{step['started_at']}\n  ended   {step['ended_at']}", highlight=False)
    out.print("  command " + printable(" ".join(step["command"])), highlight=False,
              markup=False)
    out.print("  inputs  " + (", ".join(step["inputs"]) or "none"), highlight=False)
    out.print("  outputs " + (", ".join(step["outputs"]) or "none"), highlight=False)
    if step["error"]:
        out.print(f"  error   {printable(step['error'])}", style="red", highlight=False,
                  markup=False)


@commands.command()
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
    if json_out and dot:
        raise BadInputError("choose one of --json and --dot")
    direction = "downstream" if downstream else "upstream"
    with open_operations() as cp:
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


@commands.command()
def explain(
    ref: Annotated[str, typer.Argument(help="MODEL@VERSION, NAME@VERSION or MODEL@ALIAS")],
    json_out: JsonOpt = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip re-hashing bytes.")
                         ] = False,
) -> None:
    """Answer: which data, code, steps, identities, environments and metrics made this; for
    MODEL@ALIAS also which signed decision, approvals and gate results put it there."""
    with open_operations() as cp:
        answer = cp.explain(ref, verify=not no_verify)
    if json_out:
        emit_json(answer)
    else:
        render_explain(answer)
    if answer["verified"] is False:
        raise typer.Exit(1)


def status_style(status: str) -> str:
    if status == "verified":
        return "[green]verified[/]"
    if status == "not checked":
        return "[yellow]not checked[/]"
    return f"[red]{status}[/]"


def _table(*columns: str, title: str) -> Any:
    return new_table(*columns, title=title, title_justify="left")


def render_explain(answer: dict[str, Any]) -> None:
    s = answer["subject"]
    out.print(f"[bold]{s['ref']}[/] ({s['kind']})  {s['digest']}  {status_style(s['status'])}",
              highlight=False)
    if answer.get("registered_as"):
        out.print(f"registered as {answer['registered_as']}", highlight=False)
        for label, notes in (("model", answer.get("model_annotations")),
                             ("version", answer.get("version_annotations"))):
            if notes and (notes.get("description") or notes.get("tags")):
                tags = ", ".join(f"{k}={v}" for k, v in sorted(notes["tags"].items()))
                text = "; ".join(x for x in (notes.get("description"), tags and f"tags {tags}")
                                 if x)
                out.print(f"  {label}: {escape(text)}", highlight=False)
    sections = [("Which data and label versions?", answer["data"]),
                ("Which feature and training code?", answer["code"]),
                ("Intermediate assets", answer["intermediates"]),
                ("Which reports?", answer["reports"])]
    for title, items in sections:
        table = _table("ref", "kind", "digest", "by", "status", title=title)
        for x in items:
            label = x["ref"]
            if x.get("used_by_steps"):
                label += f" (used by {', '.join(x['used_by_steps'])})"
            table.add_row(label, x["kind"], x["digest"][:23] + "…", x["created_by"],
                          status_style(x["status"]))
        out.print(table if items else f"[bold]{title}[/] none recorded")
    _render_metrics(answer["metrics"])
    table = _table("step", "identity", "status", "when", "environment", "code revision",
                   title="Which steps ran it, as whom, where?")
    for st in answer["steps"]:
        env = st["environment"]
        rev = st["code_revision"] or {}
        commit = (rev.get("commit") or "no git")[:12] + (" dirty" if rev.get("dirty") else "")
        # recorded by whoever ran the step: shown as text, never as markup or escapes
        table.add_row(f"{st['kind']} {st['id'][:12]}", st["identity"], st["status"],
                      escape(printable(str(st["started_at"]))),
                      escape(printable(f"py{env.get('python')} {env.get('hostname')}")),
                      escape(printable(commit)))
    out.print(table)
    if answer.get("promotion") is not None:
        _render_promotion(answer["promotion"])
    if answer.get("hidden"):
        out.print(f"[yellow]{answer['hidden']} upstream version(s) or step(s) in namespaces "
                  "you may not read are not shown: this answer is incomplete[/]",
                  highlight=False)
    if answer["unexplained_inputs"]:
        out.print("[red]inputs with no recorded origin:[/] "
                  + ", ".join(answer["unexplained_inputs"]), highlight=False)
    if answer["verified"]:
        out.print("[green]every link's bytes re-hashed and matched[/]")
    elif answer["verified"] is False:
        out.print("[red]verification FAILED for at least one link[/]")


def _render_metrics(items: list[dict[str, Any]]) -> None:
    title = "Which metrics?"
    if not items:
        out.print(f"[bold]{title}[/] none recorded (metrics count from an evaluate step that "
                  "consumes the model)")
        return
    table = _table("ref", "values", "by", "status", title=title)
    for x in items:
        values = flatten_numbers(x.get("values"))
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in values) or "(no numeric values)"
        table.add_row(x["ref"], shown, x["created_by"], status_style(x["status"]))
    out.print(table)


def _render_promotion(promotion: dict[str, Any]) -> None:
    alias, version = promotion.get("alias"), promotion.get("version")
    if promotion.get("override"):
        headline = "[red]BREAK-GLASS OVERRIDE[/]"
        if promotion.get("reason"):
            headline += f": {escape(str(promotion['reason']))}"
    elif promotion.get("decision"):
        result = promotion.get("result") or "recorded"
        headline = f"signed decision {promotion['decision']} ({result})"
    else:
        headline = "[yellow]no promotion decision (an unprotected alias moved directly)[/]"
    out.print(f"[bold]Which decision put it at @{alias}?[/] version {version}, moved by "
              f"{promotion.get('moved_by')} at {promotion.get('moved_at')}; {headline}",
              highlight=False)
    if promotion.get("signed_by") or promotion.get("policy_version") is not None:
        out.print(f"  signed by {promotion.get('signed_by')} under promotion policy "
                  f"v{promotion.get('policy_version')}", highlight=False)
    approvals = promotion.get("approvals") or []
    table = _table("approver", "decision", "key", title="Which approvals?")
    for a in approvals:
        table.add_row(str(a.get("approver")), str(a.get("decision", "approve")),
                      str(a.get("keyid") or "")[:16] + ("…" if a.get("keyid") else ""))
    out.print(table if approvals else "[bold]Which approvals?[/] none recorded")
    rules = promotion.get("rules") or []
    table = _table("rule", "result", "why", title="Which gate results?")
    for rule in rules:
        table.add_row(str(rule.get("rule")),
                      "[green]pass[/]" if rule.get("passed") else "[red]FAIL[/]",
                      escape(str(rule.get("detail") or "")))
    out.print(table if rules else "[bold]Which gate results?[/] none recorded")


@commands.command()
def verify(
    ref: Annotated[str | None, typer.Argument(help="NAME@VERSION (or use --all)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Re-hash every stored version.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Verify a version's bytes and its whole signed provenance chain under the trust policy
    (exit 1 on any failure); --all re-hashes every stored version."""
    if not ref and not all_:
        raise BadInputError("name a version or pass --all", hint="chainproof verify model@1")
    if ref and all_:
        raise BadInputError("name a version or pass --all, not both")
    with open_operations() as cp:
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
    table = _table("link", "kind", "signed by", "result", title=f"provenance of {report.target} "
                   f"(trust policy v{report.policy_version})")
    for link in report.links:
        result = ("[green]ok[/]: " + "; ".join(link.checks) if not link.problems
                  else "[red]FAILED[/]: " + "; ".join(link.problems))
        table.add_row(link.ref, link.kind, link.signer or "(source)", result)
    out.print(table)
    if report.ok:
        out.print(f"[green]verified chain of {len(report.links)} links[/]")


@commands.command()
def digest(
    path: Annotated[Path, typer.Argument(help="File or directory.")],
    algorithm: Annotated[str, typer.Option(help="sha256 or blake3")] = "sha256",
    sha256sum: Annotated[bool, typer.Option(
        "--sha256sum", help="Print `HEX  PATH` as sha256sum (or b3sum) does, so `sha256sum -c` "
                            "can check it (files only).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Print a file's or directory's digest without storing anything (like sha256sum)."""
    from chainproof.digest import digest_path

    if algorithm not in ("sha256", "blake3"):
        raise BadInputError(f"--algorithm {algorithm!r} is not sha256 or blake3")
    if not path.exists():
        raise BadInputError(f"no such file or folder: {path}", hint="check the path")
    if sha256sum and json_out:
        raise BadInputError("choose one of --sha256sum and --json")
    if sha256sum and path.is_dir():
        raise BadInputError(f"{path} is a folder: sha256sum can only check files",
                            hint="drop --sha256sum to get the folder's manifest digest")
    try:
        result = digest_path(path, algorithm=algorithm)
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}",
                            hint="check the path and its permissions") from None
    if json_out:
        value: dict[str, Any] = {"path": str(path), "digest": f"{algorithm}:{result.digest}",
                                 "size": result.size, "is_directory": result.is_directory}
        if result.manifest is not None:
            value["manifest"] = json.loads(result.manifest.canonical_bytes())
        emit_json(value)
        return
    if sha256sum:
        sys.stdout.write(f"{result.digest}  {path}\n")
        return
    sys.stdout.write(f"{algorithm}:{result.digest}  {path}\n")
