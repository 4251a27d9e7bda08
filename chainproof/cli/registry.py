"""The registry and promotion: ``registry ...``, ``policy ...``, ``promote``, ``approve``,
``reject``, ``execute``, ``pull``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from chainproof.cli._common import JsonOpt, emit_json, new_table, open_operations, out, read_text
from chainproof.errors import BadInputError, ChainproofError

commands = typer.Typer()
registry_app = typer.Typer(no_args_is_help=True, help="Registered models, versions, aliases.")
policy_app = typer.Typer(no_args_is_help=True, help="The promotion policy.")


@registry_app.command("create")
def registry_create(model: Annotated[str, typer.Argument(help="[NAMESPACE/]MODEL")]) -> None:
    """Register a model name."""
    with open_operations() as cp:
        cp.create_model(model)
    out.print(f"[green]registered model[/] {model}", highlight=False)


@registry_app.command("list")
def registry_list(json_out: JsonOpt = False) -> None:
    """List registered models you may read: versions and where each alias points."""
    with open_operations() as cp:
        rows = cp.model_list()
    if json_out:
        emit_json(rows)
        return
    # tags and descriptions get their columns only when some model has them (80 columns)
    notes = any(r["tags"] or r["description"] for r in rows)
    table = new_table("model", "versions", "aliases",
                      *(("tags", "description") if notes else ()), "created", "by")
    for r in rows:
        aliases = ", ".join(f"{a} -> {v}" + (" [red](BREAK-GLASS)[/]"
                                             if a in r.get("overrides", ()) else "")
                            for a, v in sorted(r["aliases"].items()))
        annotations = (_tags(r["tags"]), escape(r["description"] or "")) if notes else ()
        table.add_row(r["model"], str(r["versions"]), aliases, *annotations, r["created_at"],
                      r["created_by"])
    out.print(table)


def _tags(tags: dict[str, str]) -> str:
    return escape(", ".join(f"{k}={v}" for k, v in sorted(tags.items())))


def _version_option() -> Any:
    return typer.Option("--version", "-v", help="The model version (default: the registered "
                                                "model itself).", min=1)


@registry_app.command("tag")
def registry_tag(model: Annotated[str, typer.Argument(help="[NAMESPACE/]MODEL")],
                 key: Annotated[str, typer.Argument(help="Tag key, e.g. team")],
                 value: Annotated[str, typer.Argument(help="Tag value")],
                 version: Annotated[int | None, _version_option()] = None) -> None:
    """Set a tag on a registered model or one of its versions (as MLflow's tags). Tags are
    for people and tools: the gate and the loader never read them."""
    with open_operations() as cp:
        cp.set_model_tag(model, key, value, version=version)
    where = f"{model}@{version}" if version else model
    out.print(f"[green]tagged[/] {escape(where)}: {escape(key)}={escape(value)}",
              highlight=False)


@registry_app.command("untag")
def registry_untag(model: Annotated[str, typer.Argument(help="[NAMESPACE/]MODEL")],
                   key: Annotated[str, typer.Argument(help="Tag key")],
                   version: Annotated[int | None, _version_option()] = None) -> None:
    """Delete a tag of a registered model or one of its versions."""
    with open_operations() as cp:
        cp.delete_model_tag(model, key, version=version)
    where = f"{model}@{version}" if version else model
    out.print(f"[green]removed tag[/] {escape(key)} from {escape(where)}", highlight=False)


@registry_app.command("describe")
def registry_describe(model: Annotated[str, typer.Argument(help="[NAMESPACE/]MODEL")],
                      description: Annotated[str, typer.Argument(
                          help="The text (an empty string removes it)")],
                      version: Annotated[int | None, _version_option()] = None) -> None:
    """Set the description of a registered model or one of its versions."""
    with open_operations() as cp:
        cp.set_model_description(model, description, version=version)
    where = f"{model}@{version}" if version else model
    out.print(f"[green]{'described' if description else 'removed the description of'}[/] "
              f"{escape(where)}", highlight=False)


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
    if file is not None and not file.exists():
        raise BadInputError(f"--file {file}: no such file or folder", hint="check the path")
    with open_operations() as cp:
        if file is not None:
            result = cp.register_model_file(model, file, asset_name=asset_name)
            version, asset = result.version, result.asset.ref
        else:
            assert asset is not None
            version = cp.register_model_version(model, asset)
    if json_out:
        emit_json({"model": model, "version": version, "asset": asset})
        return
    out.print(f"[green]registered[/] model {model} version {version}: it pins the stored "
              f"asset version {asset} by digest", highlight=False)


@registry_app.command("versions")
def registry_versions(model: Annotated[str, typer.Argument()], json_out: JsonOpt = False
                      ) -> None:
    """Versions, aliases and the alias history of a model (overrides marked)."""
    with open_operations() as cp:
        info = cp.model_versions(model)
    if json_out:
        emit_json(info)
        return
    if info.get("description") or info.get("tags"):
        out.print(escape(info["model"] + (f": {info['description']}"
                                          if info.get("description") else "")),
                  highlight=False)
        if info.get("tags"):
            out.print(f"  tags: {_tags(info['tags'])}", highlight=False)
    notes = any(v.get("tags") or v.get("description") for v in info["versions"])
    table = new_table("version", "asset", "digest", "by", "aliases",
                      *(("tags", "description") if notes else ()), title=info["model"])
    for v in info["versions"]:
        aliases = [f"{a} [red](BREAK-GLASS)[/]" if info["aliases"].get(a, {}).get("override")
                   else a for a in v["aliases"]]
        annotations = (_tags(v.get("tags") or {}), escape(v.get("description") or "")) \
            if notes else ()
        table.add_row(str(v["version"]), v["asset"], v["digest"][:23] + "…", v["created_by"],
                      ", ".join(aliases), *annotations)
    out.print(table)
    hist = new_table("when", "alias", "from", "to", "by", "decision", title="alias history")
    for h in info["history"]:
        decision = ("[red]BREAK-GLASS OVERRIDE[/]: " + escape(h["reason"] or "")) if h["override"] \
            else (h["decision"] or "direct move (unprotected alias)")
        hist.add_row(h["moved_at"], h["alias"], str(h["from_version"] or "-"),
                     str(h["to_version"]), h["moved_by"], decision)
    out.print(hist)


@registry_app.command("alias")
def registry_alias(model: Annotated[str, typer.Argument()],
                   version: Annotated[int, typer.Argument()],
                   alias: Annotated[str, typer.Argument()]) -> None:
    """Move an unprotected alias (protected ones move only through `promote`)."""
    with open_operations() as cp:
        cp.set_alias(model, version, alias)
    out.print(f"[green]{model}@{alias}[/] -> version {version}", highlight=False)


@registry_app.command("requests")
def registry_requests(status: Annotated[str | None, typer.Option(help="pending, rejected, "
                                                                     "executed")] = None,
                      json_out: JsonOpt = False) -> None:
    """Promotion requests and their reviews."""
    if status is not None and status not in REQUEST_STATUSES:
        raise BadInputError(f"--status {status!r} is not one of {', '.join(REQUEST_STATUSES)}",
                            hint="leave it out to list every request")
    with open_operations() as cp:
        rows = cp.promotion_requests(status)
    if json_out:
        emit_json(rows)
        return
    table = new_table("id", "model", "version", "alias", "status", "requested by", "reviews")
    for r in rows:
        table.add_row(r["id"], r["model"], str(r["version"]), r["alias"], r["status"],
                      r["requested_by"], ", ".join(f"{x['approver']}:{x['decision']}"
                                                   for x in r["reviews"]))
    out.print(table)


def _model_version(ref: str) -> tuple[str, int]:
    """``MODEL@VERSION`` under the one name grammar (ASCII digits, 1..MAX_VERSION)."""
    from chainproof.records.names import parse_ref

    model, at, _ = ref.partition("@")
    if not at:
        raise BadInputError(f"{ref!r} is not MODEL@VERSION", hint="e.g. fraud-review@3")
    parsed = parse_ref(ref)
    assert parsed.version is not None
    return model, parsed.version


def _alias(alias: str) -> str:
    """A target alias (``--to``) under the name grammar: never empty or malformed."""
    from chainproof.records.names import check_name

    return check_name(alias, what="alias")


REQUEST_STATUSES = ("pending", "rejected", "executed")


def render_gate(gate: Any) -> None:
    table = new_table("rule", "result", "why", title=f"{gate.model}@{gate.version} -> {gate.alias} "
                  f"(promotion policy v{gate.policy_version})", title_justify="left")
    for o in gate.outcomes:
        table.add_row(o.rule, "[green]pass[/]" if o.passed else "[red]FAIL[/]", o.detail)
    out.print(table)


@commands.command()
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
    to = _alias(to)
    if force and not reason:
        raise BadInputError("--force needs --reason", hint='--reason "incident 4711"')
    with open_operations() as cp:
        if force:
            assert reason is not None
            gate, decision = cp.force_promotion(model, version, to, reason)
            if json_out:
                emit_json({"decision": decision, **gate.to_dict(), "override": True})
                return
            render_gate(gate)
            out.print(f"[red]BREAK-GLASS[/]: {model}@{to} -> {version} by override "
                      f"(decision {decision}); this is recorded in the log and every listing",
                      highlight=False)
            return
        request_id = cp.request_promotion(model, version, to)
        gate = cp.check_request(request_id)
    if json_out:
        emit_json(gate.to_dict())
        return
    out.print(f"promotion request [bold]{request_id}[/] opened", highlight=False)
    render_gate(gate)


@commands.command()
def approve(request_id: Annotated[str, typer.Argument()],
            reason: Annotated[str | None, typer.Option(help="Optional note.")] = None) -> None:
    """Sign an approval of a promotion request with your key."""
    note = None
    with open_operations() as cp:
        decision = cp.approve(request_id, reason)
        try:  # the approval is committed: showing the gate may fail, never undo or hide it
            gate = cp.check_request(request_id) if decision is None else None
        except ChainproofError as exc:
            gate, note = None, exc.message
    out.print(f"[green]approved[/] {request_id}", highlight=False)
    if note:
        out.print(f"(the gate could not be shown: {escape(note)})", highlight=False)
    if decision:
        out.print(f"policy auto-executed the promotion (decision {decision})", highlight=False)
    elif gate is not None:
        render_gate(gate)


@commands.command()
def reject(request_id: Annotated[str, typer.Argument()],
           reason: Annotated[str, typer.Option(help="Why (required).")]) -> None:
    """Sign a rejection of a promotion request."""
    with open_operations() as cp:
        cp.reject(request_id, reason)
    out.print(f"[yellow]rejected[/] {request_id}", highlight=False)


@commands.command("execute")
def execute_cmd(request_id: Annotated[str, typer.Argument()], json_out: JsonOpt = False) -> None:
    """Execute an approved promotion: the gate is evaluated again and the decision signed."""
    from chainproof.errors import PolicyViolationError

    with open_operations() as cp:
        try:
            gate, decision = cp.execute_promotion(request_id)
        except PolicyViolationError as exc:
            blocked = getattr(exc, "gate", None)
            if blocked is not None and not json_out:
                render_gate(blocked)
            raise
    if json_out:
        emit_json({"decision": decision, **gate.to_dict()})
        return
    render_gate(gate)
    out.print(f"[green]promoted[/] {gate.model}@{gate.alias} -> {gate.version} "
              f"(decision {decision})", highlight=False)


@policy_app.command("show")
def policy_show(json_out: JsonOpt = False) -> None:
    """Print the promotion policy in force."""
    with open_operations() as cp:
        version, document = cp.promotion_policy()
    if json_out:
        emit_json({"version": version, "document": document})
        return
    sys.stdout.write(document)


@policy_app.command("set")
def policy_set(file: Annotated[Path, typer.Argument(help="Policy YAML.")]) -> None:
    """Set a new version of the promotion policy (admin, logged)."""
    text = read_text(file, what="policy", nonempty=True)
    with open_operations() as cp:
        version = cp.set_promotion_policy(text)
    out.print(f"[green]promotion policy v{version} in force[/]")


@policy_app.command("check")
def policy_check(ref: Annotated[str, typer.Argument(help="MODEL@VERSION")],
                 to: Annotated[str, typer.Option("--to", help="Target alias.")],
                 json_out: JsonOpt = False) -> None:
    """Dry run: evaluate every rule for a promotion without changing anything (exit 1 if it
    would be blocked)."""
    model, version = _model_version(ref)
    to = _alias(to)
    with open_operations() as cp:
        gate = cp.check_promotion(model, version, to)
    if json_out:
        emit_json(gate.to_dict())
    else:
        render_gate(gate)
    if not gate.passed:
        raise typer.Exit(1)


STAMP_SUFFIX = ".chainproof-verified"


@commands.command()
def pull(
    ref: Annotated[str, typer.Argument(help="MODEL@ALIAS, e.g. fraud-review@production")],
    dest: Annotated[Path, typer.Argument(help="Where to put the verified bytes.")],
    allow_override: Annotated[bool, typer.Option(help="Accept a break-glass promotion.")
                              ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing DEST file (only "
                                                        "once the new bytes verified).")
                     ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Fetch exactly the bytes a promotion approved, after re-verifying decision, approvals,
    provenance, scan and digest (exit 1 with the reason if any check fails). Embedded, a file
    DEST gets DEST.chainproof-verified beside it (its digest, size and mtime, so loading it
    again can skip a re-hash); against a server the client re-hashes what it downloads and
    writes no such file."""
    import os
    import uuid

    replacing = dest.exists() or dest.is_symlink()
    if replacing and not force:
        raise BadInputError(f"{dest} already exists",
                            hint="pull into a new path, or pass --force to replace it")
    if replacing and dest.is_dir() and not dest.is_symlink():
        raise BadInputError(f"{dest} is a folder; --force replaces files only",
                            hint="remove it first, or pull into a new path")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise BadInputError(f"folder {parent} does not exist",
                            hint=f"create it first (mkdir -p {parent}) or pull elsewhere")
    target = dest.with_name(f".{dest.name}.pull-{uuid.uuid4().hex[:8]}") if replacing else dest
    stamp = target.with_name(target.name + STAMP_SUFFIX)
    try:
        with open_operations() as cp:
            loaded = cp.load_model(ref, allow_override=allow_override, dest=target)
        if replacing:  # the verified bytes take DEST's place in one rename
            os.replace(target, dest)
            if stamp.exists():
                os.replace(stamp, dest.with_name(dest.name + STAMP_SUFFIX))
    finally:
        if replacing:
            for leftover in (target, stamp):
                if leftover.is_file() or leftover.is_symlink():
                    leftover.unlink()
    if json_out:
        emit_json({**loaded.to_dict(), "path": str(dest)})
        return
    for check in loaded.checks:
        out.print(f"  [green]✓[/] {check}", highlight=False)
    out.print(f"[green]pulled[/] {loaded.model}@{loaded.alias} = version {loaded.version} "
              f"({loaded.digest}) to {dest}", highlight=False)
