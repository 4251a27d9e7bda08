from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_wine

from chainproof.validate import (
    LabelConfig,
    ValidationConfig,
    confident_learning_suspects,
    find_label_issues,
    validate_dataset,
)


def _frame(loader: object) -> tuple[pd.DataFrame, np.ndarray]:
    x, y = loader(return_X_y=True)  # type: ignore[operator]
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    return df, y


def _flip(
    y: np.ndarray, rate: float, seed: int, target: int | None = None
) -> tuple[np.ndarray, set[int]]:
    rng = np.random.default_rng(seed)
    y = y.copy()
    classes = np.unique(y)
    pool = np.arange(len(y)) if target is None else np.flatnonzero(y == target)
    idx = rng.choice(pool, int(rate * len(pool)), replace=False)
    for i in idx:
        y[i] = rng.choice(classes[classes != y[i]])
    return y, {int(i) for i in idx}


def _pr(found: set[int], truth: set[int]) -> tuple[float, float]:
    tp = len(found & truth)
    return tp / max(len(found), 1), tp / len(truth)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine, load_digits])
def test_uniform_flips_found_on_bundled_datasets(loader: object) -> None:
    df, y = _frame(loader)
    noisy, flipped = _flip(y, 0.05, seed=0)
    rep = find_label_issues(df.assign(label=noisy), "label")
    found = {s.row_id for s in rep.suspects}
    precision, recall = _pr(found, flipped)
    assert precision >= 0.7 and recall >= 0.7, (precision, recall)
    assert rep.issue_rate == pytest.approx(len(found) / len(df))
    # Suspects are ranked most-suspicious first.
    conf = [s.self_confidence for s in rep.suspects]
    assert conf == sorted(conf)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine, load_digits])
def test_targeted_flips_of_one_class(loader: object) -> None:
    df, y = _frame(loader)
    noisy, flipped = _flip(y, 0.10, seed=1, target=0)
    rep = find_label_issues(df.assign(label=noisy), "label")
    precision, recall = _pr({s.row_id for s in rep.suspects}, flipped)
    assert recall >= 0.5 and precision >= 0.5, (precision, recall)


def test_gate_fails_against_clean_reference() -> None:
    df, y = _frame(load_digits)
    noisy, _ = _flip(y, 0.05, seed=2)
    clean = df.assign(label=y)
    # The fast model is enough here: this tests the gate rule, the models are tested above.
    cfg = ValidationConfig(labels=LabelConfig(model="logistic"))
    rep = validate_dataset(
        df.assign(label=noisy), reference=clean, label_column="label", config=cfg
    )
    assert rep.labels is not None
    assert rep.labels.reference_issue_rate is not None
    assert rep.labels.issue_rate is not None
    assert rep.labels.issue_rate > rep.labels.reference_issue_rate + 0.02
    assert not rep.passed
    assert any("reference" in p for p in rep.labels.problems)
    ok = validate_dataset(clean, reference=clean, label_column="label", config=cfg)
    assert ok.labels is not None
    assert ok.labels.passed, ok.labels.problems


def test_duplicates_and_conflicting_labels() -> None:
    df, y = _frame(load_wine)
    base = df.assign(label=y)
    dup = pd.concat([base, base.iloc[:3], base.iloc[[10]].assign(label=(y[10] + 1) % 3)])
    rep = find_label_issues(dup.reset_index(drop=True), "label")
    assert rep.duplicate_rows == 3
    assert rep.conflicting_rows == 2
    assert set(rep.conflict_examples) == {10, len(base) + 3}
    assert not rep.passed


def test_confident_joint_core() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.9, 0.1]])
    assert confident_learning_suspects(labels, probs).tolist() == [
        False,
        False,
        True,
        False,
        False,
        True,
    ]


def _classes_table(seed: int, n: int = 20_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 4)) + y[:, None] * np.array([2.0, 1.0, -1.0, 0.0])
    return pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(label=y.astype(str))


def test_targeted_flip_moves_one_class_but_not_the_marginals() -> None:
    ref = _classes_table(0)
    cur = _classes_table(1)
    # Relabel 10 % of class 2 as class 0 only (a targeted poisoning).
    lab = cur["label"].astype(int).to_numpy().copy()
    rng = np.random.default_rng(4)
    idx = rng.choice(np.flatnonzero(lab == 2), int(0.1 * (lab == 2).sum()), replace=False)
    lab[idx] = 0
    poisoned = cur.assign(label=lab.astype(str))
    fast = ValidationConfig(labels=LabelConfig(model="logistic"))
    rep = validate_dataset(poisoned, reference=ref, label_column="label", config=fast)
    assert rep.drift is not None and not set(rep.drift.flagged) - {"label"}
    assert rep.labels is not None
    shifted = {s.label for s in rep.labels.class_shifts if s.flagged}
    assert shifted == {"0"}
    clean = validate_dataset(cur, reference=ref, label_column="label", config=fast)
    assert clean.labels is not None and not [s for s in clean.labels.class_shifts if s.flagged]
    assert clean.passed, clean.problems


def test_label_checks_skip_cleanly_with_one_class() -> None:
    df, _ = _frame(load_wine)
    rep = find_label_issues(df.assign(label="x"), "label", config=LabelConfig())
    assert rep.issue_rate is None and rep.notes


def test_continuous_label_is_not_treated_as_classes() -> None:
    df, _ = _frame(load_wine)
    rep = find_label_issues(df.assign(label=np.arange(len(df)) * 0.5), "label")
    assert rep.issue_rate is None and "regression" in " ".join(rep.notes)


def test_a_labels_file_without_features_has_no_label_conflicts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A labels asset holding only a key and the label (the README's layout): every row would
    'share features' with every other; the conflict check is skipped, said in a note."""
    import numpy as np
    import pandas as pd

    from chainproof.validate import validate_dataset

    labels = pd.DataFrame({"order_id": range(500),
                           "fraud": np.random.RandomState(0).randint(0, 2, 500)})
    report = validate_dataset(labels, label_column="fraud", key_columns=["order_id"])
    assert not [f for f in report.findings if f.check == "label_conflicts"]
    assert report.passed
    assert any("no feature columns" in n for n in report.to_dict()["labels"]["notes"])
