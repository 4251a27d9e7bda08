"""Evidence about assets: ``validate`` (datasets) and ``scan`` (model files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from chainproof.cli._common import JsonOpt, emit_json, open_operations, out, writable_file
from chainproof.errors import BadInputError

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
    overrides = parse_thresholds(threshold or [])  # bad names or values: exit 2, nothing run
    with open_operations() as cp:
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
    """Statically scan model files (pickle, joblib, PyTorch, numpy, safetensors, ONNX) against
    an allowlist: exit 0 clean, 1 findings, 2 unreadable or malformed."""
    from chainproof.scan import load_allowlist, scan_path

    if allowlist is not None and not allowlist.is_file():
        raise BadInputError(f"--allowlist {allowlist}: no such file", hint="check the path")
    rules = load_allowlist(allowlist)
    path = Path(target)
    recorded = None
    shown_as: tuple[str, str] | None = None
    if path.exists() or path.is_symlink():
        report = scan_path(path, allowlist=rules)
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
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _render_scan(report: Any, shown_as: tuple[str, str] | None = None) -> None:
    """One row per file; an asset's files are named by its ref, not the local cache path."""
    table = Table("file", "format", "verdict", "findings")
    table.columns[0].overflow = "fold"
    for f in report.files:
        style = {"clean": "green", "malicious": "red"}.get(f.verdict, "yellow")
        detail = "; ".join(f"{x.module}.{x.name} @{x.offset} ({x.reason})" for x in f.findings[:3])
        if len(f.findings) > 3:
            detail += f"; +{len(f.findings) - 3} more"
        name = str(f.path)
        if shown_as is not None and name.startswith(shown_as[0]):
            name = shown_as[1] + name[len(shown_as[0]):]
        table.add_row(name, f.format, f"[{style}]{f.verdict}[/]", detail or (f.error or ""))
    out.print(table)
