"""The validation gate: schema + drift + labels in one batched pass over the current version."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chainproof.errors import BadInputError, ValidationFailedError
from chainproof.validate._io import DEFAULT_BATCH_ROWS, open_source
from chainproof.validate._profile import DEFAULT_SAMPLE_SIZE, Profile, _profile_batches
from chainproof.validate._types import logical_type
from chainproof.validate.drift import DriftConfig, DriftReport, compare_profiles
from chainproof.validate.labels import LabelChecker, LabelConfig, LabelReport, class_shifts
from chainproof.validate.schema import ColumnSchema, Schema, SchemaChecker, SchemaReport

REPORT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ValidationConfig:
    drift: DriftConfig = field(default_factory=DriftConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    sample_size: int = DEFAULT_SAMPLE_SIZE
    batch_rows: int = DEFAULT_BATCH_ROWS
    seed: int = 0


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    columns: tuple[str, ...]
    schema: SchemaReport | None = None
    drift: DriftReport | None = None
    labels: LabelReport | None = None
    notes: tuple[str, ...] = ()

    @property
    def problems(self) -> tuple[str, ...]:
        out: list[str] = []
        if self.rows == 0:
            out.append("dataset has no rows")
        if self.schema is not None:
            out += [f"schema: {f.message}" for f in self.schema.findings]
        if self.drift is not None:
            for c in self.drift.columns:
                if c.flagged:
                    out.append(f"drift: {c.column}: " + "; ".join(c.reasons))
        if self.labels is not None:
            out += [f"labels: {p}" for p in self.labels.problems]
        return tuple(out)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and deterministic for the same inputs and configuration."""
        return {
            "format": "chainproof-validation-report",
            "version": REPORT_FORMAT_VERSION,
            "passed": self.passed,
            "problems": list(self.problems),
            "rows": self.rows,
            "columns": list(self.columns),
            "notes": list(self.notes),
            "schema": self.schema.to_dict() if self.schema else None,
            "drift": self.drift.to_dict() if self.drift else None,
            "labels": self.labels.to_dict() if self.labels else None,
        }

    def to_html(self) -> str:
        from html import escape

        from chainproof.validate._html import (
            drift_section,
            labels_section,
            render_page,
            schema_section,
        )

        probs = "".join(f"<li>{escape(p)}</li>" for p in self.problems[:50])
        body = (
            f"<p>{self.rows} rows, {len(self.columns)} columns.</p>"
            + (f"<h2>Problems</h2><ul>{probs}</ul>" if probs else "")
            + "".join(f'<p class="muted">{escape(n)}</p>' for n in self.notes)
        )
        if self.schema is not None:
            body += schema_section(self.schema)
        if self.labels is not None:
            body += labels_section(self.labels)
        if self.drift is not None:
            body += drift_section(self.drift)
        return render_page("Dataset validation", self.passed, body)

    def raise_for_failure(self) -> None:
        """Fail closed: raise :class:`ValidationFailedError` listing every problem."""
        if not self.passed:
            raise ValidationFailedError(
                f"dataset failed validation ({len(self.problems)} problems)",
                hint="see the HTML report; fix the data or, if the change is intended, "
                "re-baseline the schema/reference",
                problems=list(self.problems),
            )


def _load_schema(schema: Schema | Path | str | None) -> Schema | None:
    if schema is None or isinstance(schema, Schema):
        return schema
    path = Path(schema)
    if not path.is_file():
        raise BadInputError(f"{path}: schema file not found", hint="pass a YAML schema file")
    return Schema.from_yaml(path.read_bytes())


def profile_reference(
    data: Any,
    *,
    label_column: str | None = None,
    config: ValidationConfig | None = None,
) -> Profile:
    """The cacheable reference profile of a dataset version (with its label-issue rate).

    Cache ``profile.to_bytes()`` under the dataset's digest; pass the Profile as ``reference``.
    """
    cfg = config or ValidationConfig()
    src = open_source(data, batch_rows=cfg.batch_rows)
    checker = LabelChecker(src.schema, label_column, config=cfg.labels) if label_column else None
    prof = _run_pass(src, cfg, label_column, None, checker)
    if checker is not None:
        prof = prof.with_label_issue_rate(checker.finish().issue_rate)
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
    return _profile_batches(
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


def validate_dataset(
    current: Any,
    *,
    reference: Any = None,
    schema: Schema | Path | str | None = None,
    label_column: str | None = None,
    key_columns: tuple[str, ...] | list[str] = (),
    config: ValidationConfig | None = None,
) -> ValidationReport:
    """Validate a dataset version before promotion.

    ``current``: path (CSV/Parquet), pandas/polars DataFrame or pyarrow Table. ``reference``: the
    same kinds, or a cached :class:`Profile` from :func:`profile_reference`. The current version is
    read once, in batches; schema, profile and label checks all consume the same batches.
    Returns a report; call :meth:`ValidationReport.raise_for_failure` to fail closed.
    """
    cfg = config or ValidationConfig()
    sch = _load_schema(schema)
    src = open_source(current, batch_rows=cfg.batch_rows)
    names = list(src.schema.names)
    if label_column is not None and label_column not in names:
        raise BadInputError(
            f"label column {label_column!r} is not in the dataset", hint=f"columns: {names}"
        )
    if sch is None and key_columns:
        missing = [k for k in key_columns if k not in names]
        if missing:
            raise BadInputError(f"key columns {missing} are not in the dataset", hint=str(names))
        # Only key uniqueness: a schema that accepts every column as it is.
        sch = Schema(
            tuple(ColumnSchema(n, logical_type(src.schema.field(n).type)) for n in names),
            tuple(key_columns),
        )
    elif sch is not None and key_columns and tuple(key_columns) != sch.key_columns:
        sch = Schema(sch.columns, tuple(key_columns), sch.min_rows, sch.max_rows, sch.version)
    schema_checker = SchemaChecker(sch, src.schema) if sch is not None else None
    label_checker = (
        LabelChecker(src.schema, label_column, config=cfg.labels) if label_column else None
    )
    cur_profile = _run_pass(src, cfg, label_column, schema_checker, label_checker)
    schema_report = schema_checker.finish() if schema_checker else None
    notes: list[str] = []
    drift = None
    ref_profile: Profile | None = None
    if reference is not None:
        if isinstance(reference, Profile):
            ref_profile = reference
            if label_column is not None and reference.label_column != label_column:
                notes.append(
                    f"reference profile was built without label column {label_column!r}: no "
                    "reference label-issue rate and no per-class shift check; rebuild it with "
                    "profile_reference(..., label_column=...)"
                )
            if ref_profile.sample_size != cfg.sample_size or ref_profile.seed != cfg.seed:
                notes.append(
                    "reference profile was built with different sample settings; results stay "
                    "valid but are not comparable bit-for-bit with a fresh run"
                )
        else:
            ref_profile = profile_reference(reference, label_column=label_column, config=cfg)
        drift = compare_profiles(ref_profile, cur_profile, cfg.drift, label_column=label_column)
    labels = None
    if label_checker is not None:
        ref_rate = ref_profile.label_issue_rate if ref_profile is not None else None
        labels = label_checker.finish(ref_rate)
        if ref_profile is not None and cfg.labels.class_shift:
            shifts = class_shifts(ref_profile, cur_profile, cfg.labels)
            # A feature whose whole distribution drifted moves within every class too; that is
            # already a drift finding, so only within-class moves the marginal hides count here.
            drifted = set(drift.flagged) if drift is not None else set()
            shifts = tuple(replace(s, flagged=False) if s.feature in drifted else s for s in shifts)
            labels = replace(labels, class_shifts=shifts)
    return ValidationReport(
        rows=cur_profile.rows,
        columns=tuple(names),
        schema=schema_report,
        drift=drift,
        labels=labels,
        notes=tuple(notes),
    )
