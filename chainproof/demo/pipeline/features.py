"""Feature job for the warehouse demo: order and ticket features from the raw tables.

Run by the ``svc-feature-job`` identity through ``chainproof run``; ``transform(df)`` is also what
chainproof's feature-meaning check runs on a pinned probe to see whether a new version of this
file changes what a feature means.

    python features.py --orders ORDERS.parquet --tickets TICKETS.parquet --out-dir DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

PAYMENT_METHODS = ("card", "paypal", "gift_card", "bank_transfer")
CARRIERS = ("dhl", "ups", "local")
WAREHOUSES = ("north", "south", "east", "west", "central")


def transform(df: pd.DataFrame) -> pd.DataFrame:
    """Order-level features, one row per order, keyed by ``order_id``."""
    out = pd.DataFrame({"order_id": df["order_id"].astype("int64")})
    out["amount_usd"] = df["amount"].astype("float64")
    out["log_amount"] = np.log1p(out["amount_usd"])
    out["n_items"] = df["n_items"].astype("int64")
    out["account_age_days"] = df["account_age_days"].astype("int64")
    out["new_account"] = (df["account_age_days"] < 30).astype("int64")
    out["prior_orders"] = df["prior_orders"].astype("int64")
    out["address_mismatch"] = df["billing_shipping_mismatch"].astype("int64")
    out["night_order"] = ((df["order_hour"] < 5) | (df["order_hour"] > 22)).astype("int64")
    for method in PAYMENT_METHODS:
        out[f"pay_{method}"] = (df["payment_method"] == method).astype("int64")
    out["distance_km"] = df["distance_km"].astype("float64")
    out["weight_kg"] = df["weight_kg"].astype("float64")
    out["express"] = df["express"].astype("int64")
    for carrier in CARRIERS:
        out[f"carrier_{carrier}"] = (df["carrier"] == carrier).astype("int64")
    for site in WAREHOUSES:
        out[f"wh_{site}"] = (df["warehouse"] == site).astype("int64")
    return out


def transform_tickets(df: pd.DataFrame) -> pd.DataFrame:
    """Ticket-level features, one row per ticket, keyed by ``ticket_id``."""
    out = pd.DataFrame({"ticket_id": df["ticket_id"].astype("int64")})
    for column in ("sentiment", "hours_waiting"):
        out[column] = df[column].astype("float64")
    out["prior_tickets"] = df["prior_tickets"].astype("int64")
    out["log_order_amount"] = np.log1p(df["order_amount"].astype("float64"))
    for channel in ("email", "chat", "phone"):
        out[f"channel_{channel}"] = (df["channel"] == channel).astype("int64")
    for category in ("delivery", "refund", "damaged", "account", "billing"):
        out[f"cat_{category}"] = (df["category"] == category).astype("int64")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=Path, required=True)
    parser.add_argument("--tickets", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    transform(pd.read_parquet(args.orders)).to_parquet(
        args.out_dir / "order-features.parquet", index=False)
    transform_tickets(pd.read_parquet(args.tickets)).to_parquet(
        args.out_dir / "ticket-features.parquet", index=False)


if __name__ == "__main__":
    main()
