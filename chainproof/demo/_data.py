"""Synthetic warehouse data: orders with payments, shipments, support tickets, and their labels.

Seeded and deterministic for a given size, so the demo and its tests see the same numbers. The
labels are drawn from the features through a known, mostly deterministic rule (with a little
noise), which is what makes poisoning detectable: a flipped label disagrees with features that
otherwise predict it well. Pure computation: writing files lives in :func:`write_warehouse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PAYMENT_METHODS = ("card", "paypal", "gift_card", "bank_transfer")
CARRIERS = ("dhl", "ups", "local")
WAREHOUSES = ("north", "south", "east", "west", "central")
TICKET_CHANNELS = ("email", "chat", "phone")
TICKET_CATEGORIES = ("delivery", "refund", "damaged", "account", "billing")
PRIORITIES = ("low", "normal", "high", "urgent")


@dataclass(frozen=True)
class Warehouse:
    """The raw tables the data engineer registers."""

    orders: pd.DataFrame
    tickets: pd.DataFrame
    fraud_labels: pd.DataFrame
    delivery_labels: pd.DataFrame
    ticket_labels: pd.DataFrame


def generate(orders: int = 30_000, *, seed: int = 8) -> Warehouse:
    """Orders (payments and shipments folded in), about a third as many tickets, and labels."""
    rng = np.random.default_rng(seed)
    n = orders
    order_id = np.arange(100_000, 100_000 + n)
    payment = rng.choice(len(PAYMENT_METHODS), n, p=[0.62, 0.22, 0.08, 0.08])
    amount = np.round(np.exp(rng.normal(3.9, 0.8, n)), 2)  # dollars, median ~ $50
    account_age = np.round(rng.exponential(400, n)).astype(np.int64)
    country_mismatch = rng.random(n) < 0.07
    hour = rng.integers(0, 24, n)
    items = rng.poisson(2.0, n) + 1
    prior_orders = rng.poisson(np.clip(account_age / 90, 0.1, None))
    carrier = rng.choice(len(CARRIERS), n, p=[0.4, 0.4, 0.2])
    warehouse = rng.choice(len(WAREHOUSES), n)
    distance = np.round(rng.gamma(2.0, 180, n), 1)
    weight = np.round(items * rng.gamma(2.0, 0.6, n), 2)
    express = rng.random(n) < 0.18
    orders_df = pd.DataFrame({
        "order_id": order_id,
        "customer_id": rng.integers(1, n // 3 + 2, n),
        "amount": amount,
        "currency": "USD",
        "payment_method": np.asarray(PAYMENT_METHODS)[payment],
        "n_items": items,
        "account_age_days": account_age,
        "prior_orders": prior_orders,
        "billing_shipping_mismatch": country_mismatch,
        "order_hour": hour,
        "warehouse": np.asarray(WAREHOUSES)[warehouse],
        "carrier": np.asarray(CARRIERS)[carrier],
        "distance_km": distance,
        "weight_kg": weight,
        "express": express,
    })

    # Fraud: large orders from new accounts, gift cards, address mismatch, night-time.
    night = (hour < 5) | (hour > 22)
    score = (-4.1 + 1.6 * np.log(amount / 50 + 0.1) + 2.8 * country_mismatch
             + 2.2 * (payment == PAYMENT_METHODS.index("gift_card"))
             + 2.0 * (account_age < 30) + 1.0 * night - 0.15 * np.minimum(prior_orders, 10))
    is_fraud = (score + rng.logistic(0, 0.35, n)) > 0
    fraud_df = pd.DataFrame({"order_id": order_id, "is_fraud": is_fraud.astype(np.int64)})

    # Delivery delay in days: distance, weight, carrier, warehouse load, express.
    carrier_slow = np.array([0.0, 0.3, 1.1])[carrier]
    warehouse_load = np.array([0.2, 0.0, 0.6, 0.1, 0.9])[warehouse]
    delay = (0.4 + distance / 400 + 0.08 * weight + carrier_slow + warehouse_load
             - 0.9 * express + rng.gamma(1.2, 0.35, n))
    delivery_df = pd.DataFrame({"order_id": order_id,
                                "delay_days": np.round(np.clip(delay, 0, None), 2)})

    m = max(n // 3, 50)
    ticket_order = rng.choice(order_id, m)
    linked = orders_df.set_index("order_id").loc[ticket_order]
    channel = rng.choice(len(TICKET_CHANNELS), m, p=[0.5, 0.35, 0.15])
    category = rng.choice(len(TICKET_CATEGORIES), m, p=[0.35, 0.2, 0.15, 0.15, 0.15])
    sentiment = np.round(np.clip(rng.normal(-0.1, 0.45, m), -1, 1), 3)
    waited = np.round(rng.exponential(20, m), 1)
    prior_tickets = rng.poisson(0.6, m)
    tickets_df = pd.DataFrame({
        "ticket_id": np.arange(500_000, 500_000 + m),
        "order_id": ticket_order,
        "channel": np.asarray(TICKET_CHANNELS)[channel],
        "category": np.asarray(TICKET_CATEGORIES)[category],
        "sentiment": sentiment,
        "hours_waiting": waited,
        "prior_tickets": prior_tickets,
        "order_amount": linked["amount"].to_numpy(),
    })
    urgency = (-1.2 * sentiment + waited / 25 + 0.5 * prior_tickets
               + np.array([0.3, 0.9, 1.4, 0.2, 0.6])[category]
               + 0.6 * (channel == TICKET_CHANNELS.index("phone"))
               + 0.4 * np.log1p(linked["amount"].to_numpy() / 100)
               + rng.normal(0, 0.25, m))
    level = np.digitize(urgency, [1.2, 2.2, 3.2])
    ticket_labels_df = pd.DataFrame({"ticket_id": tickets_df["ticket_id"],
                                     "priority": np.asarray(PRIORITIES)[level]})
    return Warehouse(orders_df, tickets_df, fraud_df, delivery_df, ticket_labels_df)


def flip_fraud_labels(labels: pd.DataFrame, orders: pd.DataFrame, *, share: float = 0.10,
                      seed: int = 13) -> tuple[pd.DataFrame, int]:
    """A targeted poisoning: mark ``share`` of the legitimate orders paid by card as fraud.

    An attacker who wants the fraud-review model to flood reviewers (or to learn that card
    payments are risky) flips one class in one segment; returns the new labels and how many
    rows were flipped.
    """
    rng = np.random.default_rng(seed)
    merged = labels.merge(orders[["order_id", "payment_method"]], on="order_id")
    candidates = np.flatnonzero((merged["is_fraud"] == 0).to_numpy()
                                & (merged["payment_method"] == "card").to_numpy())
    chosen = rng.choice(candidates, round(len(candidates) * share), replace=False)
    poisoned = labels.copy()
    poisoned.loc[poisoned.index[chosen], "is_fraud"] = 1
    return poisoned, len(chosen)


def write_warehouse(data: Warehouse, folder: Path) -> dict[str, Path]:
    """Write each table as Parquet; returns asset name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"orders": data.orders, "tickets": data.tickets, "fraud-labels": data.fraud_labels,
              "delivery-labels": data.delivery_labels, "ticket-labels": data.ticket_labels}
    paths = {}
    for name, frame in tables.items():
        path = folder / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        paths[name] = path
    return paths
