"""Who may do what: ``identity``, ``key``, ``role``, ``token``, ``namespace`` and ``trust``."""

from __future__ import annotations

import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from chainproof.cli._common import (
    JsonOpt,
    emit_json,
    new_table,
    open_operations,
    out,
    read_bytes,
    read_text,
    writable_file,
)
from chainproof.errors import BadInputError

identity_app = typer.Typer(no_args_is_help=True, help="People and service accounts.")
key_app = typer.Typer(no_args_is_help=True, help="Signing keys (private keys stay with you).")
role_app = typer.Typer(no_args_is_help=True, help="Roles per namespace.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens for the team server.")
namespace_app = typer.Typer(no_args_is_help=True, help="Governed or experiment namespaces.")
trust_app = typer.Typer(no_args_is_help=True, help="The trust policy for provenance.")


@identity_app.command("create")
def identity_create(
    name: Annotated[str, typer.Argument(help="Identity name, e.g. svc-trainer.")],
    kind: Annotated[str, typer.Option(help="person or service")] = "person",
) -> None:
    """Create an identity (logged)."""
    with open_operations() as cp:
        cp.create_identity(name, kind)
    out.print(f"[green]created[/] identity {name} ({kind})", highlight=False)


@identity_app.command("list")
def identity_list(json_out: JsonOpt = False) -> None:
    """List identities (all of them for an auditor or admin; else yourself)."""
    with open_operations() as cp:
        rows = cp.identity_list()
    if json_out:
        emit_json(rows)
        return
    table = new_table("name", "kind", "created", "by")
    for r in rows:
        table.add_row(r["name"], r["kind"], r["created_at"], r["created_by"])
    out.print(table)


@key_app.command("generate")
def key_generate(
    out_path: Annotated[Path, typer.Option("--out", help="Private key file to create (0600).")],
    passphrase_env: Annotated[str | None, typer.Option(
        help="Encrypt with the passphrase in this environment variable.")] = None,
) -> None:
    """Make an ECDSA P-256 key pair: PKCS#8 PEM private key, and PUBLIC beside it."""
    from chainproof import identities

    writable_file(out_path, option="--out")  # its folder must exist: never create parents
    passphrase = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            raise BadInputError(f"environment variable {passphrase_env} is empty")
        passphrase = value.encode()
    keyid = identities.generate_key_file(out_path, passphrase)
    out.print(f"[green]generated[/] key {keyid}\n  private: {out_path} (keep it; never "
              f"upload it)\n  public:  {identities.public_path(out_path)}", highlight=False)


@key_app.command("register")
def key_register(
    identity: Annotated[str, typer.Argument()],
    public_key: Annotated[Path, typer.Argument(help="Public key PEM.")],
) -> None:
    """Register an identity's public key (logged)."""
    data = read_bytes(public_key)
    with open_operations() as cp:
        keyid = cp.register_key(identity, data)
    out.print(f"[green]registered[/] key {keyid} for {identity}", highlight=False)


@key_app.command("rotate")
def key_rotate(
    identity: Annotated[str, typer.Argument()],
    public_key: Annotated[Path, typer.Argument(help="The new public key PEM.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "rotated",
) -> None:
    """Register a new key and revoke the identity's active keys, atomically."""
    data = read_bytes(public_key)
    with open_operations() as cp:
        keyid = cp.rotate_key(identity, data, reason)
    out.print(f"[green]rotated[/] {identity} to key {keyid}", highlight=False)


@key_app.command("revoke")
def key_revoke(
    keyid: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why (required).")],
    compromised: Annotated[bool, typer.Option(
        "--compromised", help="The key leaked: withdraw every signature it ever made, not "
                              "only later ones.")] = False,
) -> None:
    """Revoke a key: signatures recorded after now are invalid; earlier ones stay valid, unless
    the key is revoked as --compromised (then none of its signatures count)."""
    with open_operations() as cp:
        cp.revoke_key(keyid, reason, compromised=compromised)
    out.print(f"[yellow]revoked[/] key {keyid}", highlight=False)


@key_app.command("list")
def key_list(identity: Annotated[str | None, typer.Option()] = None,
             json_out: JsonOpt = False) -> None:
    """List registered keys."""
    with open_operations() as cp:
        rows = cp.key_list(identity)
    if json_out:
        emit_json(rows)
        return
    table = new_table("keyid", "identity", "registered", "revoked")
    for r in rows:
        table.add_row(r["keyid"][:24] + "…", r["identity"], r["registered_at"],
                      f"{r['revoked_at']} ({r['revoked_reason']})" if r["revoked_at"] else "")
    out.print(table)


@role_app.command("grant")
def role_grant(identity: Annotated[str, typer.Argument()], role: Annotated[str, typer.Argument()],
               namespace: Annotated[str, typer.Option(help="Namespace or glob.")]) -> None:
    """Grant a role in a namespace (admin, logged)."""
    with open_operations() as cp:
        cp.grant_role(identity, role, namespace)
    out.print(f"[green]granted[/] {role} in {namespace} to {identity}", highlight=False)


@role_app.command("revoke")
def role_revoke(identity: Annotated[str, typer.Argument()],
                role: Annotated[str, typer.Argument()],
                namespace: Annotated[str, typer.Option(help="Namespace or glob.")]) -> None:
    """Revoke a role (admin, logged)."""
    with open_operations() as cp:
        cp.revoke_role(identity, role, namespace)
    out.print(f"[yellow]revoked[/] {role} in {namespace} from {identity}", highlight=False)


@role_app.command("list")
def role_list(json_out: JsonOpt = False) -> None:
    """List every grant."""
    with open_operations() as cp:
        rows = cp.role_list()
    if json_out:
        emit_json(rows)
        return
    table = new_table("identity", "role", "namespace", "granted", "by")
    for r in rows:
        table.add_row(r["identity"], r["role"], r["namespace"], r["granted_at"], r["granted_by"])
    out.print(table)


@namespace_app.command("set")
def namespace_set(name: Annotated[str, typer.Argument()],
                  mode: Annotated[str, typer.Option(help="governed or experiment")]) -> None:
    """Make a namespace governed (each role its part) or an experiment sandbox."""
    with open_operations() as cp:
        cp.set_namespace_mode(name, mode)
    out.print(f"[green]namespace {name} is {mode}[/]", highlight=False)


@namespace_app.command("list")
def namespace_list(json_out: JsonOpt = False) -> None:
    """List the namespaces you may read, each with its mode."""
    with open_operations() as cp:
        rows = cp.namespace_list()
    if json_out:
        emit_json(rows)
        return
    table = new_table("namespace", "mode")
    for r in rows:
        table.add_row(r["name"], r["mode"])
    out.print(table)


MAX_TOKEN_DAYS = 366  # the server's cap (chainproof.access.grants.create_token)


def parse_duration(text: str) -> timedelta:
    """``30d`` or ``12h``: a positive lifetime (the server also caps it at a year)."""
    match = re.fullmatch(r"(\d+)([dh])", text.strip())
    if not match:
        raise BadInputError(f"--expires {text!r} is not a duration",
                            hint="a number of days or hours, e.g. 30d or 12h")
    n, unit = int(match.group(1)), match.group(2)
    if n <= 0:
        raise BadInputError(f"--expires {text!r}: a token must live at least one hour",
                            hint="e.g. 30d or 12h")
    longest = MAX_TOKEN_DAYS if unit == "d" else MAX_TOKEN_DAYS * 24
    if n > longest:  # also keeps timedelta from overflowing on huge numbers
        raise BadInputError(f"--expires {text!r}: a token must expire within a year",
                            hint=f"at most {MAX_TOKEN_DAYS}d (or {MAX_TOKEN_DAYS * 24}h)")
    return timedelta(days=n) if unit == "d" else timedelta(hours=n)


@token_app.command("create")
def token_create(identity: Annotated[str, typer.Argument()],
                 expires: Annotated[str, typer.Option(help="Lifetime, e.g. 30d or 12h (at most "
                                                           "a year).")] = "30d",
                 json_out: JsonOpt = False) -> None:
    """Create an API token for an identity. It is shown once and stored only as a hash."""
    lifetime = parse_duration(expires)
    with open_operations() as cp:
        token_id, token = cp.create_token(identity, lifetime)
    if json_out:
        emit_json({"id": token_id, "identity": identity, "token": token})
        return
    out.print(f"token {token_id} for {identity} (shown once; store it in a secret manager):",
              highlight=False)
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(json_out: JsonOpt = False) -> None:
    """List API tokens: ids, owners, expiry and revocation; never the secrets."""
    with open_operations() as cp:
        rows = cp.token_list()
    if json_out:
        emit_json(rows)
        return
    table = new_table("id", "identity", "created", "by", "expires", "revoked")
    for r in rows:
        table.add_row(r["id"], r["identity"], r["created_at"], r["created_by"],
                      r["expires_at"], r["revoked_at"] or "")
    out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a token now."""
    with open_operations() as cp:
        cp.revoke_token(token_id)
    out.print(f"[yellow]revoked[/] token {token_id}", highlight=False)


@trust_app.command("show")
def trust_show(json_out: JsonOpt = False) -> None:
    """Print the trust policy in force."""
    with open_operations() as cp:
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
    text = read_text(file, what="policy", nonempty=True)
    with open_operations() as cp:
        version = cp.set_trust_policy(text)
    out.print(f"[green]trust policy v{version} in force[/]")
