from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chainproof.errors import BadInputError, MalformedFileError
from chainproof.validate import Schema, check_schema, infer_schema


def _df(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "age": rng.integers(18, 90, n),
            "score": rng.random(n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )


def test_infer_and_roundtrip_yaml() -> None:
    s = infer_schema(_df(), key_columns=["id"])
    text = s.to_yaml()
    assert "chainproof_schema: 1" in text
    again = Schema.from_yaml(text)
    assert again == s
    assert again.column("color") is not None
    assert again.column("color").categories == ("blue", "green", "red")  # type: ignore[union-attr]
    assert again.column("id").unique  # type: ignore[union-attr]
    assert check_schema(_df(), s).passed


def test_every_rule_is_reported_precisely() -> None:
    s = infer_schema(_df(), key_columns=["id"])
    bad = _df()
    bad.loc[3, "age"] = 500
    bad.loc[7, "color"] = "purple"
    bad.loc[9, "id"] = 2
    bad["score"] = bad["score"].astype(object)
    bad.loc[5, "score"] = None
    bad["score"] = bad["score"].astype(float)
    bad = bad.drop(columns=[]).assign(extra=1)
    rep = check_schema(bad, s)
    rules = {(f.column, f.rule): f for f in rep.findings}
    assert rules[("age", "range_max")].row_ids == (3,)
    assert rules[("age", "range_max")].examples == (500.0,)
    assert rules[("color", "unknown_category")].examples == ("purple",)
    assert rules[("color", "unknown_category")].row_ids == (7,)
    assert rules[("id", "unique")].row_ids == (9,)
    assert rules[("score", "not_null")].row_ids == (5,)
    assert ("extra", "extra_column") in rules
    assert not rep.passed
    assert rep.to_dict()["findings"]


def test_missing_column_type_change_and_row_count() -> None:
    s = infer_schema(_df(), tolerance=0.1)
    changed = _df(100).drop(columns=["color"])
    changed["age"] = changed["age"].astype(str) + " years"
    rules = {(f.column, f.rule) for f in check_schema(changed, s).findings}
    assert ("color", "missing_column") in rules
    assert ("age", "type_changed") in rules
    assert (None, "row_count") in rules


def test_int_to_float_widening_is_accepted() -> None:
    df = _df()
    s = infer_schema(df)
    assert s.column("score").type == "float"  # type: ignore[union-attr]
    assert check_schema(df.assign(score=df["score"].round().astype(int)), s).passed


@pytest.mark.parametrize(
    "text",
    [
        "not: [valid",
        "- a list",
        "chainproof_schema: 2\ncolumns: [{name: a, type: int}]",
        "chainproof_schema: 1\ncolumns: []",
        "chainproof_schema: 1\ncolumns: [{name: a, type: integer}]",
        "chainproof_schema: 1\ncolumns: [{name: a, type: int, bogus: 1}]",
        "chainproof_schema: 1\ncolumns: [{name: a, type: int, min: 5, max: 1}]",
        "chainproof_schema: 1\ncolumns: [{name: a, type: int}, {name: a, type: int}]",
        "chainproof_schema: 1\nkey_columns: [b]\ncolumns: [{name: a, type: int}]",
        "chainproof_schema: 1\ncolumns: [{name: a, type: int, nullable: 'no'}]",
        "chainproof_schema: 1\ncolumns: [{name: a, type: string, categories: [1, 2]}]",
        "chainproof_schema: 1\nrows: {min: -1}\ncolumns: [{name: a, type: int}]",
        "chainproof_schema: 1\nsurprise: 1\ncolumns: [{name: a, type: int}]",
    ],
)
def test_strict_parsing(text: str) -> None:
    with pytest.raises(MalformedFileError):
        Schema.from_yaml(text)


def test_infer_on_empty_dataset_is_refused() -> None:
    with pytest.raises(BadInputError):
        infer_schema(_df().iloc[:0])


def test_empty_dataset_fails_row_count() -> None:
    s = infer_schema(_df())
    rep = check_schema(_df().iloc[:0], s)
    assert [f.rule for f in rep.findings] == ["row_count"]


def test_duplicate_keys_are_named_with_their_counts() -> None:
    """"customer_id 1043 appears 3 times", most repeated first, across batches, with a count
    of the repeated values and of the extra rows (not only row positions)."""
    ids = [*range(1000, 1100), 1043, 1043, 7, 1000, 1001, 1002, 1003, 1004, 1005]
    df = pd.DataFrame({"customer_id": ids, "amount": np.arange(len(ids), dtype=float)})
    schema = infer_schema(df.drop_duplicates("customer_id"), key_columns=["customer_id"],
                          tolerance=1.0)
    checked = check_schema(df, schema)
    (finding,) = [f for f in checked.findings if f.rule == "unique"]
    assert finding.message.startswith(
        "7 values of 'customer_id' appear more than once (8 extra rows): "
        "customer_id 1043 appears 3 times, customer_id 1000 appears 2 times")
    assert finding.message.endswith(", and 2 more")
    assert finding.count == 8 and finding.examples[0] == 1043 and finding.occurrences[0] == 3
    assert len(finding.examples) == 5 and finding.keys[0] == {"customer_id": 1043}
    assert finding.row_ids[0] == 100  # the first row that repeats an earlier value
    detail = checked.as_findings()
    unique = next(f for f in detail if f.details["rule"] == "unique")
    assert unique.details["occurrences"][:2] == [3, 2] and "1043 appears 3 times" in unique.line()
    assert finding.to_dict()["occurrences"][0] == 3

    composite = infer_schema(df.iloc[:100].assign(line=1), key_columns=["customer_id", "line"],
                             tolerance=1.0)
    twice = pd.concat([df.iloc[:100], df.iloc[[5]]]).assign(line=1)
    (one,) = [f for f in check_schema(twice, composite).findings if f.rule == "unique"]
    assert one.message == ("1 value of key ['customer_id', 'line'] appears more than once "
                           "(1 extra row): (customer_id=1005, line=1) appears 2 times")
    assert one.column is None and one.keys == ({"customer_id": 1005, "line": 1},)


def test_duplicate_string_keys_are_quoted() -> None:
    df = pd.DataFrame({"code": ["a b", "x", "a b"], "v": [1, 2, 3]})
    schema = infer_schema(df.iloc[:2], key_columns=["code"], tolerance=1.0)
    (finding,) = [f for f in check_schema(df, schema).findings if f.rule == "unique"]
    assert "code 'a b' appears 2 times" in finding.message
