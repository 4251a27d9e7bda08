"""The validation gate: schema + drift + labels in one batched pass over the current version.

Every check reports :class:`~chainproof.validate.findings.Finding` objects with a severity
(``fail`` / ``warn`` / ``info``); the report's ``passed`` means "no finding at or above
``block_on``" ("fail" by default, "warn" for governed namespaces).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chainproof.errors import BadInputError, ValidationFailedError
from chainproof.validate._io import DEFAULT_BATCH_ROWS, open_source
from chainproof.validate._profile import DEFAULT_SAMPLE_SIZE, Profile, id_like, profile_batches
from chainproof.validate._types import logical_type
from chainproof.validate.drift import DriftConfig, DriftReport, compare_profiles
from chainproof.validate.findings import (
    Finding,
    check_block_on,
    highest,
    severity_rank,
    sort_findings,
)
from chainproof.validate.labels import LabelChecker, LabelConfig, LabelReport
from chainproof.validate.schema import ColumnSchema, Schema, SchemaChecker, SchemaReport
from chainproof.validate.thresholds import apply_thresholds, check_thresholds

REPORT_FORMAT_VERSION = 2


def _tool_version() -> str:
    from chainproof import __version__

    return __version__


@dataclass(frozen=True)
class ValidationConfig:
    drift: DriftConfig = field(default_factory=DriftConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    sample_size: int = DEFAULT_SAMPLE_SIZE
    batch_rows: int = DEFAULT_BATCH_ROWS
    seed: int = 0


@dataclass(frozen=True)
class DatasetInfo:
    """Which bytes a report covers: a name (``orders@3``), a digest and the row count."""

    name: str | None = None
    digest: str | None = None
    rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": self.digest, "rows": self.rows}

    def describe(self) -> str:
        parts = [self.name or "(unnamed)"]
        if self.digest:
            parts.append(self.digest)
        if self.rows is not None:
            parts.append(f"{self.rows:,} rows")
        return ", ".join(parts)


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    columns: tuple[str, ...]
    schema: SchemaReport | None = None
    drift: DriftReport | None = None
    labels: LabelReport | None = None
    notes: tuple[str, ...] = ()
    block_on: str = "fail"
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    reference: DatasetInfo | None = None
    created_at: str | None = None
    tool_version: str = ""
    key_columns: tuple[str, ...] = ()
    label_column: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every finding of every check, most severe first."""
        out: list[Finding] = []
        if self.rows == 0:
            out.append(Finding("rows", "fail", "dataset has no rows"))
        if self.schema is not None:
            out += self.schema.as_findings()
        label_prior = self.labels is not None and any(
            c.check == "label_prior" for c in self.labels.comparisons
        )
        if self.drift is not None:
            for f in self.drift.findings:
                # With a reference that has label statistics, the class-prior test (exact, per
                # class) replaces the label column's chi-squared drift test.
                if label_prior and f.check == "label_drift" and f.details.get("test") == "chi2":
                    continue
                out.append(f)
        if self.labels is not None:
            out += self.labels.findings
        out += [Finding("validation", "info", n) for n in self.notes]
        return sort_findings(out)

    @property
    def severity(self) -> str | None:
        """The highest severity among the findings (None: nothing to report)."""
        return highest(f.severity for f in self.findings)

    @property
    def label_checked(self) -> bool:
        """Whether the label detector ran (a governed gate can require it)."""
        return self.labels is not None and self.rows > 0

    def blocking(self, block_on: str | None = None) -> tuple[Finding, ...]:
        level = severity_rank(check_block_on(block_on or self.block_on))
        return tuple(f for f in self.findings if severity_rank(f.severity) >= level)

    def passed_at(self, block_on: str) -> bool:
        """Whether the report passes when ``block_on`` severities block."""
        return not self.blocking(block_on)

    @property
    def problems(self) -> tuple[str, ...]:
        """One line per blocking finding (at or above ``block_on``)."""
        return tuple(_problem_line(f) for f in self.blocking())

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per ``warn`` finding that does not block."""
        level = severity_rank(self.block_on)
        return tuple(
            _problem_line(f)
            for f in self.findings
            if f.severity == "warn" and severity_rank("warn") < level
        )

    @property
    def passed(self) -> bool:
        return not self.blocking()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and deterministic for the same inputs, configuration and ``created_at``."""
        return {
            "format": "chainproof-validation-report",
            "version": REPORT_FORMAT_VERSION,
            "tool_version": self.tool_version,
            "created_at": self.created_at,
            "dataset": self.dataset.to_dict(),
            "reference": self.reference.to_dict() if self.reference else None,
            "passed": self.passed,
            "block_on": self.block_on,
            "severity": self.severity,
            "label_checked": self.label_checked,
            "label_column": self.label_column,
            "key_columns": list(self.key_columns),
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
            "thresholds": dict(sorted(self.thresholds.items())),
            "rows": self.rows,
            "columns": list(self.columns),
            "notes": list(self.notes),
            "schema": self.schema.to_dict() if self.schema else None,
            "drift": self.drift.to_dict() if self.drift else None,
            "labels": self.labels.to_dict() if self.labels else None,
        }

    def header_lines(self) -> list[str]:
        lines = [f"dataset:   {self.dataset.describe()}"]
        lines.append(f"reference: {self.reference.describe() if self.reference else '(none)'}")
        lines.append(
            f"checked:   {self.created_at or '(time not recorded)'} by chainproof "
            f"{self.tool_version}; label column: {self.label_column or '(none)'}; key: "
            f"{', '.join(self.key_columns) or '(none)'}"
        )
        return lines

    def to_text(self, *, max_lines: int = 50) -> str:
        """Plain-text rendering: identity, verdict, then every fail and warn finding."""
        sev = self.severity
        verdict = "PASSED" if self.passed else "FAILED"
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in ("fail", "warn")}
        lines = self.header_lines()
        lines.append(
            f"result:    {verdict} (blocking on {self.block_on}; highest severity "
            f"{sev or 'none'}; {counts['fail']} fail, {counts['warn']} warn)"
        )
        shown = [f for f in self.findings if f.severity in ("fail", "warn")]
        for f in shown[:max_lines]:
            lines.append(f"  {f.line()}")
        if len(shown) > max_lines:
            lines.append(f"  ... and {len(shown) - max_lines} more (see the JSON or HTML report)")
        infos = sum(1 for f in self.findings if f.severity == "info")
        if infos:
            lines.append(f"  ({infos} info findings in the JSON/HTML report)")
        return "\n".join(lines)

    def to_html(self) -> str:
        from chainproof.validate._html import (
            drift_section,
            findings_section,
            identity_section,
            labels_section,
            render_page,
            schema_section,
        )

        body = identity_section(self) + findings_section(self.findings, self.block_on)
        body += f"<p>{self.rows} rows, {len(self.columns)} columns.</p>"
        if self.schema is not None:
            body += schema_section(self.schema)
        if self.labels is not None:
            body += labels_section(self.labels)
        if self.drift is not None:
            body += drift_section(self.drift)
        return render_page("Dataset validation", self.passed, body, self.severity)

    def raise_for_failure(self) -> None:
        """Fail closed: raise :class:`ValidationFailedError` listing every blocking finding."""
        if not self.passed:
            raise ValidationFailedError(
                f"dataset failed validation ({len(self.problems)} problems)",
                hint="see the HTML report; fix the data or, if the change is intended, "
                "re-baseline the schema/reference",
                problems=list(self.problems),
            )


_FAMILY = {
    "schema": "schema",
    "rows": "dataset",
    "drift": "drift",
    "validation": "validation",
}


def _problem_line(f: Finding) -> str:
    family = _FAMILY.get(f.check, "labels")
    if family == "drift" and f.column:
        return f"drift: {f.column}: {f.message}"
    if family == "dataset":
        return f.message
    return f"{family}: {f.message}"


def load_schema(schema: Schema | Path | str | None) -> Schema | None:
    """A :class:`Schema`, the contract at a YAML path, or None."""
    if schema is None or isinstance(schema, Schema):
        return schema
    path = Path(schema)
    if not path.is_file():
        raise BadInputError(f"{path}: schema file not found", hint="pass a YAML schema file")
    return Schema.from_yaml(path.read_bytes())


_load_schema = load_schema


def contract_settings(
    schema: Schema | Path | str | None,
    *,
    label_column: str | None = None,
    key_columns: tuple[str, ...] | list[str] = (),
) -> tuple[str | None, tuple[str, ...]]:
    """The label and key columns to use: the caller's, else the contract's.

    Callers that cache a reference profile (``profile_reference``) should call this first, so
    that the reference is profiled with the contract's label column too.
    """
    sch = load_schema(schema)
    label = label_column if label_column is not None else (sch.label_column if sch else None)
    keys = tuple(key_columns) if key_columns else (sch.key_columns if sch else ())
    return label, tuple(keys)


def profile_reference(
    data: Any,
    *,
    label_column: str | None = None,
    config: ValidationConfig | None = None,
    key_columns: tuple[str, ...] | list[str] = (),
) -> Profile:
    """The cacheable reference profile of a dataset version (with its label statistics).

    Cache ``profile.to_bytes()`` under the dataset's digest (and label column); pass the
    Profile as ``reference``.
    """
    cfg = config or ValidationConfig()
    src = open_source(data, batch_rows=cfg.batch_rows)
    if label_column is not None and label_column not in src.schema.names:
        raise BadInputError(
            f"label column {label_column!r} is not in the reference dataset",
            hint=f"columns: {list(src.schema.names)}",
        )
    keys = [k for k in key_columns if k in src.schema.names]
    checker = (
        LabelChecker(src.schema, label_column, config=cfg.labels, key_columns=keys)
        if label_column
        else None
    )
    prof = _run_pass(src, cfg, label_column, None, checker)
    if checker is not None:
        ids = [n for n, c in prof.columns.items() if id_like(c) and n != label_column]
        rep = checker.finish(drop_features=ids)
        prof = prof.with_label_issue_rate(rep.issue_rate)
        if rep.stats is not None:
            prof = prof.with_label_stats(rep.stats.to_dict())
    return prof


def _run_pass(
    src: Any,
    cfg: ValidationConfig,
    label_column: str | None,
    schema_checker: SchemaChecker | None,
    label_checker: LabelChecker | None,
) -> Profile:
    def on_batch(batch: Any, keys: Any) -> None:
        offset = state["offset"]
        if schema_checker is not None:
            schema_checker.update(batch, offset)
        if label_checker is not None:
            label_checker.update(batch, offset)
        state["offset"] = offset + batch.num_rows

    state = {"offset": 0}
    return profile_batches(
        src.batches(),
        src.schema,
        sample_size=cfg.sample_size,
        seed=cfg.seed,
        label_column=label_column,
        class_sample_size=min(cfg.sample_size, 20_000),
        max_categories=10_000,
        row_offset=0,
        on_batch=on_batch,
    )


def _timestamp(created_at: datetime | str | None) -> str:
    if created_at is None:
        return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    if isinstance(created_at, datetime):
        when = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
        return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(created_at)


def validate_dataset(
    current: Any,
    *,
    reference: Any = None,
    schema: Schema | Path | str | None = None,
    label_column: str | None = None,
    key_columns: tuple[str, ...] | list[str] = (),
    config: ValidationConfig | None = None,
    thresholds: Mapping[str, Any] | None = None,
    block_on: str = "fail",
    dataset_name: str | None = None,
    dataset_digest: str | None = None,
    reference_name: str | None = None,
    reference_digest: str | None = None,
    created_at: datetime | str | None = None,
) -> ValidationReport:
    """Validate a dataset version before promotion.

    ``current``: path (CSV/Parquet), pandas/polars DataFrame or pyarrow Table. ``reference``: the
    same kinds, or a cached :class:`Profile` from :func:`profile_reference`. The current version is
    read once, in batches; schema, profile and label checks all consume the same batches.

    A schema contract's ``label_column``, ``key_columns`` and ``thresholds`` are used when the
    caller gives none (``thresholds`` given here override the contract's per name).
    ``block_on`` ("fail" or "warn") decides which severities make ``passed`` false. The
    identity arguments only label the report. Call
    :meth:`ValidationReport.raise_for_failure` to fail closed.
    """
    block_on = check_block_on(block_on)
    cfg = config or ValidationConfig()
    sch = load_schema(schema)
    label_column, keys = contract_settings(sch, label_column=label_column, key_columns=key_columns)
    overrides: dict[str, float] = dict(sch.thresholds) if sch is not None else {}
    overrides.update(check_thresholds(thresholds))
    cfg = apply_thresholds(cfg, overrides)
    src = open_source(current, batch_rows=cfg.batch_rows)
    names = list(src.schema.names)
    if label_column is not None and label_column not in names:
        raise BadInputError(
            f"label column {label_column!r} is not in the dataset", hint=f"columns: {names}"
        )
    missing = [k for k in keys if k not in names]
    if missing:
        raise BadInputError(f"key columns {missing} are not in the dataset", hint=str(names))
    if sch is None and keys:
        # Only key uniqueness: a schema that accepts every column as it is.
        sch = Schema(
            tuple(ColumnSchema(n, logical_type(src.schema.field(n).type)) for n in names),
            keys,
        )
    elif sch is not None and keys and keys != sch.key_columns:
        sch = Schema(
            sch.columns,
            keys,
            sch.min_rows,
            sch.max_rows,
            sch.version,
            sch.label_column,
            sch.thresholds,
        )
    schema_checker = SchemaChecker(sch, src.schema) if sch is not None else None
    label_checker = (
        LabelChecker(src.schema, label_column, config=cfg.labels, key_columns=keys)
        if label_column
        else None
    )
    cur_profile = _run_pass(src, cfg, label_column, schema_checker, label_checker)
    schema_report = schema_checker.finish() if schema_checker else None
    notes: list[str] = []
    drift = None
    ref_profile: Profile | None = None
    if reference is not None:
        if isinstance(reference, Profile):
            ref_profile = reference
            if ref_profile.sample_size != cfg.sample_size or ref_profile.seed != cfg.seed:
                notes.append(
                    "reference profile was built with different sample settings; results stay "
                    "valid but are not comparable bit-for-bit with a fresh run"
                )
        else:
            ref_profile = profile_reference(
                reference, label_column=label_column, config=cfg, key_columns=keys
            )
        exclude = {k: "key column" for k in keys}
        drift = compare_profiles(
            ref_profile, cur_profile, cfg.drift, label_column=label_column, exclude=exclude
        )
        excluded = [c.column for c in drift.columns if c.role == "id"]
        if excluded:
            notes.append(f"excluded from drift (key or ID-like columns): {', '.join(excluded)}")
    labels = None
    if label_checker is not None:
        ids = [n for n, c in cur_profile.columns.items() if id_like(c) and n != label_column]
        drifted = (
            {c.column for c in drift.columns if c.severity in ("warn", "fail")}
            if drift is not None
            else set()
        )
        labels = label_checker.finish(
            reference=ref_profile,
            current=cur_profile,
            drifted=drifted,
            drop_features=ids,
        )
    elif sch is None or sch.label_column is None:
        notes.append("no label column given or declared: label checks did not run")
    return ValidationReport(
        rows=cur_profile.rows,
        columns=tuple(names),
        schema=schema_report,
        drift=drift,
        labels=labels,
        notes=tuple(notes),
        block_on=block_on,
        dataset=DatasetInfo(dataset_name, dataset_digest, cur_profile.rows),
        reference=(
            DatasetInfo(reference_name, reference_digest, ref_profile.rows)
            if ref_profile is not None
            else None
        ),
        created_at=_timestamp(created_at),
        tool_version=_tool_version(),
        key_columns=keys,
        label_column=label_column,
        thresholds=overrides,
    )


def report_passes(doc: Mapping[str, Any], block_on: str = "fail") -> bool:
    """Whether a recorded validation report (its ``to_dict()`` JSON) passes when ``block_on``
    severities block -- what a promotion gate calls with its policy's ``block_on``.

    Reports of format version 1 (before severities) carry only ``passed``: they pass at
    ``fail`` when ``passed``, and never at ``warn`` (their warnings were not recorded).
    """
    level = severity_rank(check_block_on(block_on))
    findings = doc.get("findings")
    if not isinstance(findings, list):
        return bool(doc.get("passed")) and block_on == "fail"
    for f in findings:
        sev = f.get("severity") if isinstance(f, Mapping) else None
        if sev not in ("info", "warn", "fail"):
            return False  # unreadable finding: fail closed
        if severity_rank(sev) >= level:
            return False
    return True
