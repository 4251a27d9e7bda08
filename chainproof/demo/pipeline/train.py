"""Training job for the warehouse demo: one scikit-learn model per task.

Run by the ``svc-trainer`` identity through ``chainproof run``. The train/holdout split is a
fixed hash of the row key, so the evaluator scores exactly the rows the trainer never saw.

    python train.py --task fraud|delay|priority --features F.parquet --labels L.parquet --out M
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

# task -> (key column, label column, is classification)
TASKS = {
    "fraud": ("order_id", "is_fraud", True),
    "delay": ("order_id", "delay_days", False),
    "priority": ("ticket_id", "priority", True),
}
DELAY_FEATURES = ("distance_km", "weight_kg", "express", "n_items", "carrier_dhl", "carrier_ups",
                  "carrier_local", "wh_north", "wh_south", "wh_east", "wh_west", "wh_central")


def holdout(keys: pd.Series) -> pd.Series:
    """True for the ~20 % of rows kept back for evaluation (a hash of the key, not random)."""
    return (keys.astype("int64") * 2654435761 % 2**32) % 100 < 20


def training_table(task: str, features: Path, labels: Path) -> tuple[pd.DataFrame, pd.Series]:
    key, label, _ = TASKS[task]
    table = pd.read_parquet(features).merge(pd.read_parquet(labels), on=key, validate="1:1")
    table = table[~holdout(table[key])]
    columns = list(DELAY_FEATURES) if task == "delay" else [
        c for c in table.columns if c not in (key, label)]
    return table[columns], table[label]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    x, y = training_table(args.task, args.features, args.labels)
    if TASKS[args.task][2]:
        model = HistGradientBoostingClassifier(max_iter=120, learning_rate=0.1,
                                               random_state=args.seed)
    else:
        model = HistGradientBoostingRegressor(max_iter=120, random_state=args.seed)
    model.fit(x, y)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, args.out)


if __name__ == "__main__":
    main()
