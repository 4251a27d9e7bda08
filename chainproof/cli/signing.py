"""Signed attestations and OpenSSF model signatures: ``attest ...`` and ``model ...``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from chainproof.cli._common import open_operations, out, read_bytes, writable_file
from chainproof.errors import BadInputError

attest_app = typer.Typer(no_args_is_help=True, help="Signed attestations.")
model_app = typer.Typer(no_args_is_help=True, help="OpenSSF Model Signing compatible "
                                                   "signatures.")


@attest_app.command("export")
def attest_export(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    out_file: Annotated[Path | None, typer.Option("--out", help=".intoto.jsonl to write")
                        ] = None,
) -> None:
    """Export the DSSE envelopes of the version's whole upstream chain as .intoto.jsonl."""
    if out_file is not None:
        writable_file(out_file, option="--out")
    with open_operations() as cp:
        envelopes = cp.export_attestations(ref)
    text = "".join(json.dumps(json.loads(e), separators=(",", ":")) + "\n" for e in envelopes)
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text)
        out.print(f"wrote {len(envelopes)} attestation(s) to {out_file}", highlight=False)


def _ignores(ignore: list[str] | None) -> list[Path]:
    # model_signing's CLI takes ignore paths relative to the current folder; so do we.
    return [Path(p).resolve() for p in ignore or []]


def _model_path(model_dir: Path) -> Path:
    if not model_dir.exists():
        raise BadInputError(f"no such file or folder: {model_dir}", hint="check the path")
    return model_dir


@model_app.command("sign")
def model_sign(
    model_dir: Annotated[Path, typer.Argument(help="Model directory or file.")],
    key: Annotated[Path, typer.Option(help="Private key PEM (P-256).")],
    signature: Annotated[Path, typer.Option(help="Bundle to write, e.g. model.sig.")],
    ignore: Annotated[list[str] | None, typer.Option(help="Path to leave out.")] = None,
) -> None:
    """Sign a model as OpenSSF model_signing does (Sigstore bundle v0.3, DSSE, in-toto)."""
    from chainproof.attest import load_private_key, sign_model

    _model_path(model_dir)
    writable_file(signature, option="--signature")
    passphrase = os.environ.get("CHAINPROOF_KEY_PASSPHRASE")
    private = load_private_key(read_bytes(key), passphrase.encode() if passphrase else None)
    sign_model(model_dir, private, signature, ignore_paths=_ignores(ignore))
    out.print(f"[green]signed[/] {model_dir} -> {signature}", highlight=False)


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

    _model_path(model_dir)
    if not signature.is_file():
        raise BadInputError(f"--signature {signature}: no such file", hint="check the path")
    keys = [load_public_key(read_bytes(p)) for p in public_key]
    result = verify_model(model_dir, signature, keys, ignore_paths=_ignores(ignore),
                          threshold=threshold)
    out.print(f"[green]verified[/] {model_dir}: {len(result.resources)} resources match the "
              f"signed manifest (root {result.root_digest[:16]}…, signed by "
              f"{len(result.signer_key_ids)} key(s))", highlight=False)
