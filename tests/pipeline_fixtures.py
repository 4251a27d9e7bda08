"""A governed warehouse pipeline with one identity per stage (registry and serving tests)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import chainproof
from chainproof import identities
from chainproof.service import Chainproof

NS = "warehouse"


def model_bytes(tag: str) -> bytes:
    """A small, genuinely benign pickled 'model' (the scanner passes it)."""
    import pickle

    return pickle.dumps({"model": tag, "weights": [0.5, 1.5]}, protocol=4)


def act_as(cp: Chainproof, name: str, tmp_path: Path, roles: tuple[str, ...] = (),
           namespace: str = NS) -> Chainproof:
    key = tmp_path / "keys" / f"{name}.pem"
    if not key.exists():
        identities.generate_key_file(key)
        cp.create_identity(name, "service" if name.startswith("svc-") else "person")
        cp.register_key(name, identities.public_path(key).read_bytes())
    for role in roles:
        cp.grant_role(name, role, namespace)
    settings = dataclasses.replace(cp.settings, identity=name, signing_key_path=key)
    return Chainproof(settings, cp.engine, cp.store)


@dataclass
class Pipeline:
    admin: Chainproof
    data: Chainproof
    features: Chainproof
    trainer: Chainproof
    evaluator: Chainproof
    alice: Chainproof
    bob: Chainproof
    deployer: Chainproof
    tmp: Path

    def train(self, tag: str, auc: float, labels_ref: str = f"{NS}/labels@1",
              scan: bool = True) -> int:
        """Train (as the trainer), evaluate (as the evaluator), register: the model version."""
        model = self.tmp / f"model-{tag}.bin"
        model.write_bytes(model_bytes(tag))
        with chainproof.step("train", inputs=[f"{NS}/feats@1", labels_ref], namespace=NS,
                             connection=self.trainer) as s:
            s.output(model, kind="model", name="fraud-model")
        asset = self.trainer.all_versions(namespace=NS, kind="model")[-1]
        metrics = self.tmp / f"metrics-{tag}.json"
        metrics.write_text(json.dumps({"auc": auc}))
        with chainproof.step("evaluate", inputs=[f"{NS}/{asset.name}@{asset.version}"],
                             namespace=NS, connection=self.evaluator) as s:
            s.output(metrics, kind="metrics", name="fraud-metrics")
        if scan:  # the gate's floor for production, and what load demands
            self.evaluator.record_report(report_kind="scan", subjects=[asset.ref],
                                         report={"verdict": "clean"}, passed=True,
                                         name="fraud-model-scan", namespace=NS)
        return self.trainer.register_model_version(f"{NS}/fraud-review", asset.ref)

    def promote(self, version: int, alias: str = "production") -> str:
        request = self.trainer.request_promotion(f"{NS}/fraud-review", version, alias)
        self.alice.approve(request)
        self.bob.approve(request)
        self.deployer.execute_promotion(request)
        return request


@pytest.fixture()
def pipe(cp: Chainproof, tmp_path: Path) -> Pipeline:
    p = Pipeline(
        admin=cp,
        data=act_as(cp, "data-eng", tmp_path, ("data-writer",)),
        features=act_as(cp, "svc-feature-job", tmp_path, ("feature-writer",)),
        trainer=act_as(cp, "svc-trainer", tmp_path, ("trainer",)),
        evaluator=act_as(cp, "svc-evaluator", tmp_path, ("evaluator",)),
        alice=act_as(cp, "alice", tmp_path, ("approver",)),
        bob=act_as(cp, "bob", tmp_path, ("approver",)),
        deployer=act_as(cp, "deployer", tmp_path, ("deployer",)),
        tmp=tmp_path)
    (tmp_path / "raw.csv").write_text("amount\n1\n")
    (tmp_path / "labels.csv").write_text("fraud\n0\n")
    p.data.add(tmp_path / "raw.csv", kind="dataset", name="orders", namespace=NS)
    p.data.add(tmp_path / "labels.csv", kind="labels", name="labels", namespace=NS)
    (tmp_path / "feats.parquet").write_text("F")
    with chainproof.step("features", inputs=[f"{NS}/orders@1"], namespace=NS,
                         connection=p.features) as s:
        s.output(tmp_path / "feats.parquet", kind="features", name="feats")
    p.trainer.create_model(f"{NS}/fraud-review")
    cp.set_promotion_policy(
        "protected_aliases: [production]\n"
        "rules:\n"
        "  - match: {alias: production}\n"
        "    approvals: {min: 2, role: approver, independent: true}\n"
        "    provenance: true\n"
        "    metrics: {auc: '>= 0.85'}\n"
        "    regression: {metric: auc, epsilon: 0.02}\n"
        "    inputs: {namespaces: [warehouse]}\n")
    return p
