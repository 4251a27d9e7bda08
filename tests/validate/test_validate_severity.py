"""Severities: each kind of poisoning is reported (>= warn), clean data never fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from validate_helpers import make_labelled

from chainproof.errors import BadInputError, MalformedFileError
from chainproof.validate import (
    LabelConfig,
    Profile,
    Schema,
    ValidationConfig,
    ValidationReport,
    infer_schema,
    parse_thresholds,
    profile_reference,
    validate_dataset,
)
from chainproof.validate.thresholds import THRESHOLDS, apply_thresholds

FAST = ValidationConfig(labels=LabelConfig(model="logistic"))
KEY = ("order_id",)


@pytest.fixture(scope="module")
def reference() -> Profile:
    return profile_reference(make_labelled(1), label_column="label", config=FAST, key_columns=KEY)


def _run(cur: object, ref: object, **kw: Any) -> ValidationReport:
    return validate_dataset(
        cur, reference=ref, label_column="label", key_columns=KEY, config=FAST, **kw
    )


def _checks(rep: ValidationReport, severity: str) -> set[str]:
    return {f.check for f in rep.findings if f.severity == severity}


def test_clean_data_passes_without_warnings(reference: Profile) -> None:
    rep = _run(make_labelled(2), reference)
    assert rep.passed and rep.severity in (None, "info"), rep.to_text()
    assert rep.passed_at("warn")
    doc = rep.to_dict()
    assert doc["severity"] == rep.severity and doc["block_on"] == "fail"
    assert doc["label_checked"] is True
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc


@pytest.mark.parametrize("noise", [0.15, 0.25])
def test_clean_data_with_noisy_labels_is_not_a_failure(noise: float) -> None:
    ref = profile_reference(
        make_labelled(3, noise=noise), label_column="label", config=FAST, key_columns=KEY
    )
    rep = _run(make_labelled(4, noise=noise), ref)
    assert rep.severity != "fail", rep.to_text()
    assert rep.labels is not None and rep.labels.issue_rate is not None
    assert rep.labels.issue_rate > 0.1  # an absolute 10 % rule would have failed it
    # Without a reference the absolute rate is only a warning.
    alone = validate_dataset(make_labelled(4, noise=noise), label_column="label", config=FAST)
    assert alone.passed and "label_issue_rate" in _checks(alone, "warn")


def test_targeted_flip_fails_and_names_suspects_by_key(reference: Profile) -> None:
    rep = _run(make_labelled(2, targeted=0.10), reference)
    assert not rep.passed
    fails = _checks(rep, "fail")
    assert {"label_prior", "label_flip"} <= fails, rep.to_text()
    flip = next(f for f in rep.findings if f.check == "label_flip" and f.severity == "fail")
    assert (flip.label_class, flip.details["true_class"]) == ("1", "0")
    assert flip.q_value is not None and flip.q_value < 0.01 and flip.effect is not None
    assert "order_id=2" in flip.message  # keys of seed 2 start at 2,000,000
    assert rep.labels is not None
    assert all(s.key is not None and "order_id" in s.key for s in rep.labels.suspects)
    sus = rep.to_dict()["labels"]["suspects"][0]
    assert sus["key"]["order_id"] >= 2_000_000
    assert rep.problems[0].startswith("labels: ")


def test_small_targeted_flip_is_at_least_a_warning(reference: Profile) -> None:
    rep = _run(make_labelled(2, targeted=0.05), reference)
    assert rep.severity in ("warn", "fail")
    assert _checks(rep, "warn") | _checks(rep, "fail") & {"label_flip", "label_prior"}


def test_uniform_flips_are_caught(reference: Profile) -> None:
    rep = _run(make_labelled(2, uniform=0.05), reference)
    assert rep.severity == "fail", rep.to_text()
    assert "label_issue_rate" in _checks(rep, "fail") | _checks(rep, "warn")
    assert "label_flip" in _checks(rep, "fail") | _checks(rep, "warn")


def test_small_mean_shift_warns_and_block_on_warn_blocks() -> None:
    ref = make_labelled(5, n=20_000).drop(columns=["label"])
    cur = make_labelled(6, n=20_000, mean_shift=0.08).drop(columns=["label"])
    rep = validate_dataset(cur, reference=ref)
    x0 = [f for f in rep.findings if f.column == "x0" and f.check == "drift"]
    assert [f.severity for f in x0] == ["warn"], rep.to_text()
    assert x0[0].effect_name == "wasserstein_std" and 0.02 < (x0[0].effect or 0) < 0.1
    assert rep.passed and rep.severity == "warn"
    assert any("x0" in w for w in rep.warnings)
    strict = validate_dataset(cur, reference=ref, block_on="warn")
    assert not strict.passed and any("x0" in p for p in strict.problems)
    text = rep.to_text()
    assert "[warn] drift x0" in text and "PASSED" in text
    html = rep.to_html()
    assert "WARN" in html and "x0" in html
    assert rep.drift is not None and rep.drift.warned == ("x0",)


def test_category_reweighting_warns() -> None:
    ref = make_labelled(7, n=20_000).drop(columns=["label"])
    cur = make_labelled(8, n=20_000, cat_reweight=0.15).drop(columns=["label"])
    rep = validate_dataset(cur, reference=ref)
    cat = [f for f in rep.findings if f.column == "cat60" and f.check == "drift"]
    assert cat and cat[0].severity in ("warn", "fail"), rep.to_text()
    assert {f.column for f in rep.findings if f.severity in ("warn", "fail")} == {"cat60"}


def test_id_columns_are_not_drift_tested_and_integers_get_whole_bins() -> None:
    ref = make_labelled(9, n=3_000).drop(columns=["label"])
    cur = make_labelled(10, n=3_000).drop(columns=["label"])
    rep = validate_dataset(cur, reference=ref)
    assert rep.passed and rep.severity == "info", rep.to_text()
    assert rep.drift is not None
    by = {c.column: c for c in rep.drift.columns}
    assert by["order_id"].role == "id" and not by["order_id"].tests
    assert any("order_id" in n for n in rep.notes)
    hist = by["count"].histogram
    assert hist is not None and all(label.isdigit() for label in hist.labels)
    # A continuous column that happens to be stored as unique integers is still tested.
    wide = ref.assign(cents=(ref["x0"] * 1e6).round().astype("int64"))
    rep2 = validate_dataset(wide.assign(order_id=wide["order_id"] + 1), reference=wide)
    assert rep2.drift is not None
    assert {c.column: c.role for c in rep2.drift.columns}["cents"] == "feature"


def test_report_identity_and_time() -> None:
    df = make_labelled(11, n=500)
    rep = validate_dataset(
        df,
        reference=df,
        dataset_name="orders@2",
        dataset_digest="sha256:" + "a" * 64,
        reference_name="orders@1",
        reference_digest="sha256:" + "b" * 64,
        created_at="2026-11-30T10:00:00Z",
    )
    doc = rep.to_dict()
    assert doc["dataset"] == {"name": "orders@2", "digest": "sha256:" + "a" * 64, "rows": 500}
    assert doc["reference"]["name"] == "orders@1" and doc["reference"]["rows"] == 500
    assert doc["created_at"] == "2026-11-30T10:00:00Z" and doc["tool_version"]
    assert doc["label_checked"] is False
    for text in (rep.to_text(), rep.to_html()):
        assert "orders@2" in text and "orders@1" in text and "2026-11-30T10:00:00Z" in text
    finding = doc["findings"][0]
    assert set(finding) >= {"check", "severity", "column", "class", "statistic", "q_value"}


def test_contract_declares_label_key_and_thresholds(tmp_path: Path, reference: Profile) -> None:
    ref = make_labelled(1)
    schema = infer_schema(ref, key_columns=KEY, tolerance=1.0)
    text = schema.to_yaml().replace(
        "key_columns:", "label_column: label\nthresholds:\n  prior_shift_fail: 0.5\nkey_columns:"
    )
    path = tmp_path / "contract.yaml"
    path.write_text(text)
    contract = Schema.from_yaml(text)
    assert contract.label_column == "label" and contract.thresholds == {"prior_shift_fail": 0.5}
    assert Schema.from_yaml(contract.to_yaml()) == contract
    # No label_column argument: the contract's label is used, so the poisoning is still seen.
    rep = validate_dataset(
        make_labelled(2, targeted=0.10), reference=reference, schema=path, config=FAST
    )
    assert rep.label_checked and rep.label_column == "label" and rep.key_columns == KEY
    prior = [f for f in rep.findings if f.check == "label_prior"]
    assert prior and all(f.severity == "warn" for f in prior)  # raised fail threshold
    assert rep.to_dict()["thresholds"] == {"prior_shift_fail": 0.5}
    # The caller's thresholds override the contract's.
    rep2 = validate_dataset(
        make_labelled(2, targeted=0.10),
        reference=reference,
        schema=path,
        config=FAST,
        thresholds={"prior_shift_fail": 0.02},
    )
    assert any(f.check == "label_prior" and f.severity == "fail" for f in rep2.findings)
    bad = text.replace("prior_shift_fail: 0.5", "prior_shift_fial: 0.5")
    with pytest.raises(MalformedFileError, match="prior_shift_fial"):
        Schema.from_yaml(bad)
    with pytest.raises(MalformedFileError, match="label_column"):
        Schema.from_yaml(text.replace("label_column: label", "label_column: nope"))


def test_threshold_parsing() -> None:
    assert parse_thresholds(["alpha=0.05", "wasserstein_warn = 0.03"]) == {
        "alpha": 0.05,
        "wasserstein_warn": 0.03,
    }
    for item, match in [
        ("nope=1", "unknown threshold 'nope'"),
        ("alpha", "name=value"),
        ("alpha=", "no value"),
        ("alpha=abc", "not a number"),
        ("alpha=0", "outside"),
        ("alpha=1", "outside"),
        ("js_fail=2", "outside"),
        ("psi_warn=nan", "finite"),
    ]:
        with pytest.raises(BadInputError, match=match) as err:
            parse_thresholds([item])
        assert err.value.hint and "wasserstein_fail" in err.value.hint
    with pytest.raises(BadInputError, match="above"):
        apply_thresholds(ValidationConfig(), {"wasserstein_warn": 0.5})
    cfg = apply_thresholds(ValidationConfig(), {"alpha": 0.05, "flip_rate_fail": 0.1})
    assert cfg.drift.alpha == cfg.labels.alpha == 0.05 and cfg.labels.flip_rate_fail == 0.1
    assert all(t.doc for t in THRESHOLDS.values())
    with pytest.raises(BadInputError):
        validate_dataset(make_labelled(1, n=100), thresholds={"bogus": 1})
    with pytest.raises(BadInputError, match="block_on"):
        validate_dataset(make_labelled(1, n=100), block_on="info")


def test_cached_reference_keeps_label_statistics(reference: Profile) -> None:
    again = Profile.from_bytes(reference.to_bytes())
    assert again.label_stats == reference.label_stats is not None
    a = _run(make_labelled(2, targeted=0.1), reference, created_at="t").to_dict()
    b = _run(make_labelled(2, targeted=0.1), again, created_at="t").to_dict()
    assert a == b


def test_reference_without_label_statistics_is_a_note_not_a_bypass() -> None:
    ref = profile_reference(make_labelled(1), config=FAST)  # profiled without the label
    rep = _run(make_labelled(2, targeted=0.1), ref)
    assert rep.labels is not None and any("without label column" in n for n in rep.labels.notes)
    # The label column's own drift test still sees the class balance move.
    assert any(f.check == "label_drift" and f.severity == "fail" for f in rep.findings)


def test_recorded_report_passes_at_the_policys_level() -> None:
    from chainproof.validate import report_passes

    ref = make_labelled(5, n=20_000).drop(columns=["label"])
    cur = make_labelled(6, n=20_000, mean_shift=0.08).drop(columns=["label"])
    doc = json.loads(json.dumps(validate_dataset(cur, reference=ref).to_dict()))
    assert report_passes(doc) and report_passes(doc, "fail") and not report_passes(doc, "warn")
    assert report_passes({"passed": True}) and not report_passes({"passed": True}, "warn")
    assert not report_passes({"findings": [{"severity": "bogus"}]})
    with pytest.raises(BadInputError):
        report_passes(doc, "info")


def test_id_column_is_no_label_feature_even_without_key() -> None:
    import numpy as np
    import pandas as pd

    def table(seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        n = 3_000
        color = rng.choice(["red", "green", "blue"], n)
        size = rng.choice(["s", "m", "l"], n)
        label = np.where(rng.random(n) < 0.3, "yes", "no")
        ids = np.arange(seed * 100_000, seed * 100_000 + n)
        return pd.DataFrame({"order_id": ids, "color": color, "size": size, "label": label})

    # Reference profiled without naming the key: the ID is still no feature, so conflicting
    # labels (many: categorical features only) are counted alike on both sides.
    ref = profile_reference(table(1), label_column="label", config=FAST)
    assert ref.label_stats is not None and ref.label_stats["conflicting_rows"] > 1_000
    rep = _run(table(2), ref)
    assert rep.severity != "fail", rep.to_text()
    keyless = validate_dataset(table(2), reference=ref, label_column="label", config=FAST)
    assert keyless.severity != "fail", keyless.to_text()
    assert keyless.labels is not None
    assert any("order_id" in n for n in keyless.labels.notes)


def test_schema_findings_name_rows_by_key() -> None:
    ref = make_labelled(12, n=1_000)
    schema = infer_schema(ref, key_columns=KEY, tolerance=0.0)
    cur = ref.copy()
    cur.loc[7, "count"] = 10_000
    rep = validate_dataset(cur, schema=schema)
    finding = next(f for f in rep.schema.findings if f.rule == "range_max")  # type: ignore[union-attr]
    assert finding.row_ids == (7,) and finding.keys == ({"order_id": 12_000_007},)
    assert "order_id=12000007" in rep.to_html()


def test_regression_target_as_label_is_no_class_comparison() -> None:
    import numpy as np

    ref = make_labelled(13, n=2_000)
    ref["label"] = np.arange(len(ref)) * 0.5
    cur = make_labelled(14, n=2_000)
    cur["label"] = np.arange(len(cur)) * 0.5 + 0.25
    prof = profile_reference(ref, label_column="label", config=FAST)
    assert prof.label_stats is not None and prof.label_stats["classes"] == []
    rep = validate_dataset(cur, reference=prof, label_column="label", config=FAST)
    assert rep.labels is not None and not rep.labels.comparisons
    assert any(f.check == "label_prior" and f.severity == "info" for f in rep.findings)
