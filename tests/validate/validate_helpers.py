"""Data factories and helpers for the validation tests (a unique module name: every test
folder has its own conftest.py, so ``from conftest import ...`` would be ambiguous)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def shared_vectors() -> Path:
    """``<repo>/../shared/vectors``; skips when the shared folder is not beside the repo."""
    path = Path(__file__).resolve().parents[2] / ".." / "shared" / "vectors"
    if not path.is_dir():
        pytest.skip(f"shared test vectors not found at {path} (expected beside the repo)")
    return path


def make_table(seed: int, n: int = 20_000, *, drift: bool = False) -> pd.DataFrame:
    """Ten clean numeric + three clean categorical columns; with ``drift`` four of them move."""
    rng = np.random.default_rng(seed)
    d: dict[str, object] = {f"num{i}": rng.normal(10 * i, 1 + i, n) for i in range(10)}
    d["count"] = rng.poisson(3, n)
    for j, probs in enumerate(([0.4, 0.3, 0.2, 0.1], [0.5, 0.5], [0.25] * 4)):
        cats = [f"c{j}_{k}" for k in range(len(probs))]
        d[f"cat{j}"] = rng.choice(cats, n, p=probs)
    if drift:
        d["num0"] = rng.normal(0.3, 1, n)  # mean shift of 0.3 sd
        d["num1"] = rng.normal(10, 2 * 1.35, n)  # scale x1.35
        d["cat0"] = rng.choice(["c0_0", "c0_1", "c0_2", "c0_3"], n, p=[0.51, 0.19, 0.2, 0.1])
        num2 = np.asarray(d["num2"], dtype=float)
        num2[rng.random(n) < 0.05] = np.nan
        d["num2"] = num2
    return pd.DataFrame(d)


DRIFTED = {"num0", "num1", "cat0", "num2"}


def make_labelled(
    seed: int,
    n: int = 5_000,
    *,
    noise: float = 0.0,
    targeted: float = 0.0,
    uniform: float = 0.0,
    mean_shift: float = 0.0,
    cat_reweight: float = 0.0,
) -> pd.DataFrame:
    """A binary classification table with an ``order_id`` key, six numeric features, a
    60-category feature and an integer count; labels carry Bayes noise, plus ``noise`` (a share
    flipped in both directions, the "realistically noisy" clean case), ``targeted`` (a share of
    class 0 relabelled 1: poisoning) and ``uniform`` (a share flipped either way: poisoning)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 6))
    x[:, 0] += mean_shift
    k = 60
    base = 1 / np.arange(1, k + 1) ** 0.7
    weights = base * np.where(np.arange(k) % 2 == 0, 1 + cat_reweight, 1 - cat_reweight)
    cat = rng.choice(k, n, p=weights / weights.sum())
    score = x @ np.array([1.5, -1.0, 0.8, 0.0, 0.5, 0.0]) + (cat % 5 - 2) * 0.3
    y = (score + rng.logistic(0, 0.5, n) > 0.5).astype(int)
    if noise:
        y = np.where(rng.random(n) < noise, 1 - y, y)
    if targeted:
        pool = np.flatnonzero(y == 0)
        y[rng.choice(pool, int(targeted * len(pool)), replace=False)] = 1
    if uniform:
        y = np.where(rng.random(n) < uniform, 1 - y, y)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    df["cat60"] = [f"c{v:02d}" for v in cat]
    df["count"] = rng.poisson(3, n)
    df["order_id"] = np.arange(seed * 1_000_000, seed * 1_000_000 + n)
    df["label"] = y.astype(str)
    return df
