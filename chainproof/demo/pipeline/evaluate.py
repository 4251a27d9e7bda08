"""Evaluation job for the warehouse demo: metrics of one model on the holdout rows.

Run by the ``svc-evaluator`` identity through ``chainproof run``. The model is loaded with
chainproof's scan-then-load (``safe_load``), never with a bare unpickler, and the metrics name
the SHA-256 of the exact model bytes they describe, so a later swap of the file is visible.

    python evaluate.py --task T --model M --features F.parquet --labels L.parquet --out metrics.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics

from chainproof.scan import safe_load

TASKS = {
    "fraud": ("order_id", "is_fraud", True),
    "delay": ("order_id", "delay_days", False),
    "priority": ("ticket_id", "priority", True),
}
DELAY_FEATURES = ("distance_km", "weight_kg", "express", "n_items", "carrier_dhl", "carrier_ups",
                  "carrier_local", "wh_north", "wh_south", "wh_east", "wh_west", "wh_central")


def holdout(keys: pd.Series) -> pd.Series:
    """The same split as train.py: ~20 % of keys, chosen by a fixed hash."""
    return (keys.astype("int64") * 2654435761 % 2**32) % 100 < 20


def score(task: str, model: object, features: Path, labels: Path) -> dict[str, float]:
    key, label, _ = TASKS[task]
    table = pd.read_parquet(features).merge(pd.read_parquet(labels), on=key, validate="1:1")
    table = table[holdout(table[key])]
    columns = list(DELAY_FEATURES) if task == "delay" else [
        c for c in table.columns if c not in (key, label)]
    x, y = table[columns], table[label]
    if task == "fraud":
        p = model.predict_proba(x)[:, 1]  # type: ignore[attr-defined]
        return {"auc": float(metrics.roc_auc_score(y, p)),
                "average_precision": float(metrics.average_precision_score(y, p)),
                "accuracy": float(metrics.accuracy_score(y, p >= 0.5)),
                "holdout_rows": len(y), "positive_rate": float(np.mean(y))}
    if task == "delay":
        pred = model.predict(x)  # type: ignore[attr-defined]
        return {"mae_days": float(metrics.mean_absolute_error(y, pred)),
                "r2": float(metrics.r2_score(y, pred)), "holdout_rows": len(y)}
    pred = model.predict(x)  # type: ignore[attr-defined]
    return {"accuracy": float(metrics.accuracy_score(y, pred)),
            "macro_f1": float(metrics.f1_score(y, pred, average="macro")),
            "holdout_rows": len(y)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    digest = "sha256:" + hashlib.sha256(args.model.read_bytes()).hexdigest()
    values = score(args.task, safe_load(args.model), args.features, args.labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"task": args.task, "model_digest": digest,
                                    "metrics": values}, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
