"""Evidence about assets: ``validate`` (datasets) and ``scan`` (model files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from chainproof.cli._common import (
    JsonOpt,
    emit_json,
    new_table,
    open_operations,
    out,
    read_text,
    writable_file,
)
from chainproof.errors import BadInputError, ScanFindingError
from chainproof.records.names import printable

commands = typer.Typer()


@commands.command()
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
    threshold: Annotated[list[str] | None, typer.Option(
        help="Override a threshold, name=value (repeatable; names in docs/validation.md).")
    ] = None,
    block_on: Annotated[str, typer.Option(help="Severity that fails the run: fail or warn.")
                        ] = "fail",
    json_out: JsonOpt = False,
) -> None:
    """Validate a dataset version: schema contract, drift against a reference, label shift and
    poisoning suspicion. Findings are graded fail / warn / info; records a signed report
    (promotion evidence); exit 1 when a finding reaches --block-on."""
    from chainproof.validate import parse_thresholds

    if html is not None:
        writable_file(html, option="--html")  # before anything is recorded
    if block_on not in ("fail", "warn"):
        raise BadInputError(f"--block-on {block_on!r} is not fail or warn",
                            hint="fail blocks on large effects only; warn also on small "
                                 "significant ones")
    if schema is not None and Path(schema).is_dir():
        raise BadInputError(f"--schema {schema} is a folder",
                            hint="give a schema YAML file or a schema asset NAME@VERSION")
    overrides = parse_thresholds(threshold or [])  # bad names or values: exit 2, nothing run
    with open_operations() as cp:
        if schema is not None and not Path(schema).exists():
            _schema_asset(cp, schema)
        report, recorded, used = cp.validate(ref, reference=reference, schema=schema,
                                             label_column=label, key_columns=key or [],
                                             record=not no_record, thresholds=overrides,
                                             block_on=block_on)
    if html is not None:
        html.write_text(report.to_html(), encoding="utf-8")
    if json_out:
        emit_json({**report.to_dict(), "reference": used,
                   "recorded_as": recorded.ref if recorded else None})
    else:
        status = "[green]passed[/]" if report.passed else "[red]FAILED[/]"
        out.print(f"validation of {ref} against {used or 'no reference'}: {status}",
                  highlight=False)
        # every finding at warn or above, with its severity (not only the failures)
        out.print(report.to_text(), highlight=False, markup=False)
        if recorded is not None:
            out.print(f"recorded signed validation report {recorded.ref}", highlight=False)
        if html is not None:
            out.print(f"HTML report: {html}", highlight=False)
    if not report.passed:
        raise typer.Exit(1)


def _schema_asset(cp: Any, schema: str) -> None:
    """``--schema`` that is no file must name a schema asset: say both, not only "no asset"."""
    try:
        cp.resolve(schema)
    except BadInputError:
        raise BadInputError(f"--schema {schema}: no such file, and no schema asset of that name",
                            hint="give a schema YAML file, or a schema asset registered with "
                                 "`chainproof add FILE --kind schema --name NAME`") from None


def _looks_like_ref(target: str) -> bool:
    return "@" in target


@commands.command()
def scan(
    target: Annotated[str, typer.Argument(help="A file or folder, or a model asset NAME@VERSION "
                                               "(then a signed scan report is recorded).")],
    allowlist: Annotated[Path | None, typer.Option(help="Extra allowlist YAML (your own "
                                                        "classes).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Statically scan model files (pickle, joblib, PyTorch, numpy, safetensors, ONNX, Keras,
    HDF5, GGUF) against an allowlist. A file or folder: exit 0 clean, 1 findings, 2 unreadable,
    malformed or of a format that is not parsed. A model asset NAME@VERSION: the signed report is
    recorded whatever the verdict, and anything short of clean is a failed check (exit 1)."""
    from chainproof.scan import load_allowlist, scan_path

    if allowlist is not None:
        read_text(allowlist, what="allowlist")  # a folder, a missing or a binary file: exit 2
    rules = load_allowlist(allowlist)
    path = Path(target)
    recorded = None
    shown_as: tuple[str, str] | None = None
    if path.exists() or path.is_symlink():
        report = scan_path(path, allowlist=rules)
        if not report.files:
            raise BadInputError(f"{target} holds no files to scan",
                                hint="scan a model file, or a folder that holds one")
    elif not _looks_like_ref(target):
        raise BadInputError(f"no such file or folder: {target}",
                            hint="scan a file or folder, or a model asset NAME@VERSION "
                                 "(e.g. fraud-model@1)")
    else:
        with open_operations() as cp:
            version = cp.resolve(target)
            local = cp.materialize(version)
            report = scan_path(local, allowlist=rules)
            shown_as = (str(local), version.ref)
            recorded = cp.record_report(report_kind="scan", subjects=[version.ref],
                                        report=report.to_dict(), passed=report.clean,
                                        name=f"{version.name}-scan", namespace=version.namespace)
    if json_out:
        emit_json({**report.to_dict(), "recorded_as": recorded.ref if recorded else None})
    else:
        _render_scan(report, shown_as)
        if recorded is not None:
            out.print(f"recorded signed scan report {recorded.ref}", highlight=False)
    if recorded is not None and shown_as is not None and not report.clean:
        # The asset was resolved and scanned: whatever stopped it passing is a check result
        # (recorded and signed), not bad input.
        raise ScanFindingError(
            f"{shown_as[1]} did not pass the scan; the failing report is recorded as "
            f"{recorded.ref}", problems=[_why_not_clean(f, shown_as) for f in report.files
                                         if not f.clean],
            hint=_scan_hint(report))
    if report.exit_code:
        raise typer.Exit(report.exit_code)


_PARSED = ("pickle, joblib, PyTorch, numpy, safetensors, ONNX, Keras, HDF5, GGUF or a zip/tar "
           "of them")


def _why_not_clean(result: Any, shown_as: tuple[str, str]) -> str:
    name = _display_name(str(result.path), shown_as)
    if result.verdict == "malicious":
        return (f"{name}: {len(result.findings)} callable(s) outside the allowlist "
                f"(e.g. {result.findings[0].module}.{result.findings[0].name})"
                if result.findings else f"{name}: malicious")
    if result.verdict == "unknown":
        return (f"{name}: its format is not one chainproof parses ({_PARSED}), so it cannot "
                "pass the scan")
    error = _in_names(result.error or "", shown_as)
    if result.verdict == "malformed":
        return f"{name}: malformed {result.format} file: {error}"
    return f"{name}: could not be inspected: {error}"


def _scan_hint(report: Any) -> str:
    if any(f.verdict == "malicious" for f in report.files):
        return ("if these classes are yours and safe, list them in an allowlist YAML "
                "(--allowlist) and scan again; otherwise do not load this model")
    return f"store the model as {_PARSED}, register that file, and scan it again"


def _in_names(text: str, shown_as: tuple[str, str] | None) -> str:
    """``text`` with the local cache path replaced by the asset's ref."""
    return text.replace(shown_as[0], shown_as[1]) if shown_as is not None else text


def _display_name(name: str, shown_as: tuple[str, str] | None) -> str:
    """An asset's file named by its ref, not by the local cache path."""
    if shown_as is not None and name.startswith(shown_as[0]):
        return shown_as[1] + name[len(shown_as[0]):]
    return name


def _render_scan(report: Any, shown_as: tuple[str, str] | None = None) -> None:
    """One row per file; an asset's files are named by its ref, not the local cache path."""
    table = new_table("file", "format", "verdict", "findings")
    for f in report.files:
        style = {"clean": "green", "malicious": "red"}.get(f.verdict, "yellow")
        detail = "; ".join(f"{x.module}.{x.name} @{x.offset} ({x.reason})" for x in f.findings[:3])
        if len(f.findings) > 3:
            detail += f"; +{len(f.findings) - 3} more"
        # module and attribute names come from the scanned file: shown, never interpreted
        table.add_row(escape(_display_name(str(f.path), shown_as)), f.format,
                      f"[{style}]{f.verdict}[/]",
                      escape(printable(detail or _in_names(f.error or "", shown_as))))
    out.print(table)
