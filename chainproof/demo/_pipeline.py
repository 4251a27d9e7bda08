"""The demo's warehouse pipeline, each stage run by its own identity with its own signing key.

data-eng registers raw data and labels; ml-eng registers the pipeline code (reviewed code is a
source asset); svc-feature-job builds features; svc-trainer trains three models; svc-evaluator
validates the training data, evaluates each model and scans its file; approvers approve; a
deployer promotes; a prediction service loads the models only through chainproof.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from chainproof import identities
from chainproof.demo._data import Warehouse, generate, write_warehouse
from chainproof.demo._service import Replica
from chainproof.records.assets import AssetKind
from chainproof.service import Chainproof, OutputSpec
from chainproof.validate import LabelConfig, ValidationConfig, profile_reference, validate_dataset

NAMESPACE = "warehouse"
PIPELINE_DIR = Path(__file__).resolve().parent / "pipeline"
CODE_FILES = ("features.py", "train.py", "evaluate.py")
ADMIN = "platform-admin"

# identity -> (kind, what it does in the story)
ACTORS: dict[str, tuple[str, str]] = {
    "data-eng": ("person", "registers raw data and labels"),
    "ml-eng": ("person", "writes and registers the pipeline code"),
    "svc-feature-job": ("service", "builds features"),
    "svc-trainer": ("service", "trains the models"),
    "svc-evaluator": ("service", "validates data, evaluates and scans models"),
    "approver-alice": ("person", "approves promotions"),
    "approver-bob": ("person", "approves promotions"),
    "svc-deployer": ("service", "executes approved promotions"),
    "svc-predict": ("service", "serves predictions"),
}
ROLES: dict[str, tuple[str, ...]] = {
    "data-eng": ("data-writer",),
    # ml-eng is also an approver: the demo shows separation of duties refusing them on a model
    # whose chain contains their own code.
    "ml-eng": ("feature-writer", "approver"),
    "svc-feature-job": ("feature-writer",),
    "svc-trainer": ("trainer",),
    "svc-evaluator": ("evaluator",),
    "approver-alice": ("approver",),
    "approver-bob": ("approver",),
    "svc-deployer": ("deployer",),
    "svc-predict": ("reader",),
}

TRUST_POLICY = """\
namespaces:
  warehouse:
    sources:
      dataset: [data-eng]
      labels: [data-eng]
      code: [ml-eng]
      schema: [data-eng]
    steps:
      features:
        signers: [svc-feature-job]
        inputs: ["source:dataset", "source:code"]
      train:
        signers: [svc-trainer]
        inputs: ["step:features", "source:labels", "source:code"]
      evaluate:
        signers: [svc-evaluator]
        inputs: ["step:train", "step:features", "source:labels", "source:code"]
      validation:
        signers: [svc-evaluator]
        inputs: ["step:features", "source:labels"]
      scan:
        signers: [svc-evaluator]
        inputs: ["step:train"]
      feature-meaning:
        signers: [svc-evaluator]
        inputs: ["step:features", "source:code"]
  "*":
    steps:
      "*": {signers: ["*"], inputs: ["*"]}
"""


#: Production needs two independent signed approvals, a verified chain, a passing scan (and,
#: for the fraud model, a passing data validation) and per-model metric floors.
PROMOTION_POLICY = """\
protected_aliases: [production]
rules:
  - match: {namespace: warehouse, model: fraud-review, alias: production}
    approvals: {min: 2, role: approver, independent: true}
    provenance: true
    evidence: [validation, scan]
    metrics: {auc: ">= 0.9"}
    inputs: {namespaces: [warehouse]}
  - match: {namespace: warehouse, model: delivery-delay, alias: production}
    approvals: {min: 2, role: approver, independent: true}
    evidence: [scan]
    metrics: {r2: ">= 0.5"}
  - match: {namespace: warehouse, model: ticket-priority, alias: production}
    approvals: {min: 2, role: approver, independent: true}
    evidence: [scan]
    metrics: {accuracy: ">= 0.6"}
"""


@dataclass(frozen=True)
class Task:
    """One of the three models: what it learns from."""

    model: str
    task: str  # the --task of train.py / evaluate.py
    features: str  # features asset name
    labels: str  # labels asset name
    title: str


TASKS = (
    Task("fraud-review", "fraud", "order-features", "fraud-labels",
         "fraud-review classifier (orders held for manual review)"),
    Task("delivery-delay", "delay", "order-features", "delivery-labels",
         "delivery-delay regressor (days late)"),
    Task("ticket-priority", "priority", "ticket-features", "ticket-labels",
         "support-ticket priority classifier"),
)
FRAUD = TASKS[0]

#: Label checks on a subsample: the confident-learning cross-validation is the slow part and a
#: few thousand rows are plenty to see a flip rate of several per cent.
VALIDATION = ValidationConfig(labels=LabelConfig(max_rows=6000))


def job_env() -> dict[str, str]:
    """The pipeline jobs' environment: one OpenMP thread each, because on a busy 2-core machine
    OpenMP's spinning worker threads make these small fits about three times slower."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def requires(feature: str) -> bool:
    """Whether a capability the demo needs exists in this build (nothing is faked without it)."""
    from chainproof import service

    checks: dict[str, Callable[[], bool]] = {
        "registry": lambda: hasattr(service.Chainproof, "execute_promotion"),
        "roles": lambda: hasattr(service.Chainproof, "grant_role"),
    }
    try:
        return checks[feature]()
    except KeyError:
        return False


@dataclass
class Demo:
    """The running demo: the admin connection, every actor's connection, and current refs."""

    cp: Chainproof
    workdir: Path
    console: Console
    rows: int
    actors: dict[str, Chainproof] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # logical name -> "ns/name@v"
    data: Warehouse | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    reference_profile: Any = None
    service: Replica | None = None  # the long-running production replica
    replicas: int = 0
    good: dict[str, str] = field(default_factory=dict)  # model -> digest of the evaluated model
    promoted: bool = False
    gates: dict[str, Any] = field(default_factory=dict)  # model -> the gate that promoted it

    def as_(self, name: str) -> Chainproof:
        return self.actors[name]

    def say(self, text: str) -> None:
        self.console.print(text)

    # --- setup ---------------------------------------------------------------------------------

    def create_actors(self) -> None:
        keys = self.workdir / "keys"
        for name, (kind, _) in ACTORS.items():
            key = keys / f"{name}.pem"
            identities.generate_key_file(key)
            self.cp.create_identity(name, kind)
            self.cp.register_key(name, identities.public_path(key).read_bytes())
            self.actors[name] = self.cp.acting_as(name, signing_key_path=key)
        self.cp.set_trust_policy(TRUST_POLICY)
        if requires("roles"):
            for name, roles in ROLES.items():
                for role in roles:
                    self.cp.grant_role(name, role, NAMESPACE)
        if requires("registry"):
            self.cp.set_promotion_policy(PROMOTION_POLICY)

    def register_raw_data(self) -> None:
        self.data = generate(self.rows)
        self.paths = write_warehouse(self.data, self.workdir / "raw")
        eng = self.as_("data-eng")
        for name, path in self.paths.items():
            kind = AssetKind.LABELS if name.endswith("labels") else AssetKind.DATASET
            added = eng.add(path, kind=kind, name=name, namespace=NAMESPACE)
            self.refs[name] = _full(added.version.ref)

    def register_code(self) -> None:
        """ml-eng registers the reviewed pipeline code, shipped in chainproof/demo/pipeline/."""
        ml = self.as_("ml-eng")
        for name in CODE_FILES:
            added = ml.add(PIPELINE_DIR / name, kind=AssetKind.CODE, name=name,
                           namespace=NAMESPACE)
            self.refs[name] = _full(added.version.ref)

    # --- stages --------------------------------------------------------------------------------

    def build_features(self, code_ref: str | None = None) -> dict[str, str]:
        job = self.as_("svc-feature-job")
        code = code_ref or self.refs["features.py"]
        out_dir = self.workdir / "runs" / f"features-{code.rsplit('@', 1)[1]}"
        result = job.run(
            kind="features", namespace=NAMESPACE, env=job_env(),
            command=[sys.executable, "{input:features.py}", "--orders", "{input:orders}",
                     "--tickets", "{input:tickets}", "--out-dir", str(out_dir)],
            inputs=[self.refs["orders"], self.refs["tickets"], code],
            outputs=[OutputSpec(out_dir / "order-features.parquet", AssetKind.FEATURES,
                                "order-features", NAMESPACE),
                     OutputSpec(out_dir / "ticket-features.parquet", AssetKind.FEATURES,
                                "ticket-features", NAMESPACE)])
        return {v.name: _full(v.ref) for v in result.outputs}

    def validate_training_data(self, features: str, labels: str, *,
                               baseline: bool = False) -> tuple[str, Any]:
        """svc-evaluator's validation gate on the fraud training table (features + labels);
        records the report as an asset and returns (report ref, ValidationReport)."""
        evaluator = self.as_("svc-evaluator")
        html = self.workdir / "reports" / f"validation-{labels.rsplit('@', 1)[1]}.html"
        html.parent.mkdir(parents=True, exist_ok=True)
        table = pd.read_parquet(evaluator.materialize(features)).merge(
            pd.read_parquet(evaluator.materialize(labels)), on="order_id", validate="1:1"
        ).drop(columns=["order_id"])
        if baseline:
            self.reference_profile = profile_reference(table, label_column="is_fraud",
                                                       config=VALIDATION)
        report = validate_dataset(table, reference=self.reference_profile,
                                  label_column="is_fraud", config=VALIDATION)
        html.write_text(report.to_html())
        recorded = evaluator.record_report(report_kind="validation", subjects=[features, labels],
                                           report=report.to_dict(), passed=report.passed,
                                           name="fraud-data-validation", namespace=NAMESPACE)
        return _full(recorded.ref), report

    def train(self, task: Task, *, features: str, labels: str) -> str:
        trainer = self.as_("svc-trainer")
        out = self.workdir / "runs" / f"train-{task.model}-{_name(labels)}" / f"{task.model}.joblib"
        result = trainer.run(
            kind="train", namespace=NAMESPACE, env=job_env(),
            command=[sys.executable, "{input:train.py}", "--task", task.task,
                     "--features", "{input:" + task.features + "}",
                     "--labels", "{input:" + task.labels + "}", "--out", str(out)],
            inputs=[features, labels, self.refs["train.py"]],
            parameters={"task": task.task, "seed": 0},
            outputs=[OutputSpec(out, AssetKind.MODEL, task.model, NAMESPACE)])
        return _full(result.outputs[0].ref)

    def evaluate(self, task: Task, model: str, *, features: str,
                 labels: str) -> tuple[str, dict[str, Any]]:
        evaluator = self.as_("svc-evaluator")
        out = (self.workdir / "runs" / f"eval-{_name(model)}-{model.rsplit('@', 1)[1]}"
               / "metrics.json")
        result = evaluator.run(
            kind="evaluate", namespace=NAMESPACE, env=job_env(),
            command=[sys.executable, "{input:evaluate.py}", "--task", task.task,
                     "--model", "{input:" + task.model + "}",
                     "--features", "{input:" + task.features + "}",
                     "--labels", "{input:" + task.labels + "}", "--out", str(out)],
            inputs=[model, features, labels, self.refs["evaluate.py"]],
            outputs=[OutputSpec(out, AssetKind.METRICS, f"{task.model}-metrics", NAMESPACE)])
        return _full(result.outputs[0].ref), json.loads(out.read_text())

    def scan(self, task: Task, model: str) -> tuple[str, Any]:
        from chainproof.scan import scan_path

        evaluator = self.as_("svc-evaluator")
        report = scan_path(evaluator.materialize(model))
        recorded = evaluator.record_report(report_kind="scan", subjects=[model],
                                           report=report.to_dict(), passed=report.clean,
                                           name=f"{task.model}-scan", namespace=NAMESPACE)
        return _full(recorded.ref), report

    def record_report(self, kind: str, name: str, report: dict[str, Any], passed: bool,
                      subjects: list[str]) -> str:
        """svc-evaluator records a check's signed report about ``subjects``."""
        recorded = self.as_("svc-evaluator").record_report(
            report_kind=kind, subjects=subjects, report=report, passed=passed, name=name,
            namespace=NAMESPACE)
        return _full(recorded.ref)

    def promote(self, task: Task, model_ref: str) -> Any:
        """The trainer registers the version; the deployer requests production; two
        approvers sign; the deployer executes through the policy gate. Returns the gate."""
        trainer, deployer = self.as_("svc-trainer"), self.as_("svc-deployer")
        model = f"{NAMESPACE}/{task.model}"
        trainer.create_model(model)
        version = trainer.register_model_version(model, model_ref)
        request = deployer.request_promotion(model, version,
                                             "production")
        for approver in ("approver-alice", "approver-bob"):
            self.as_(approver).approve(request)
        gate, _decision = deployer.execute_promotion(request)
        self.gates[task.model] = gate
        return gate

    def serving_ref(self, task: Task) -> str:
        return (f"{NAMESPACE}/{task.model}@production" if self.promoted
                else self.refs[task.model])

    def new_replica(self) -> Replica:
        """Start a replica of the prediction service, as svc-predict, with an empty cache."""
        self.replicas += 1
        where = f"replica-{self.replicas}"
        settings = dataclasses.replace(self.as_("svc-predict").settings,
                                       workspace=self.workdir / "serving" / where)
        return Replica(settings, [self.serving_ref(t) for t in TASKS], where)


def _full(ref: str) -> str:
    """Refs always carry the namespace, so resolution never depends on a default."""
    return ref if "/" in ref.split("@", 1)[0] else f"{NAMESPACE}/{ref}"


def _name(ref: str) -> str:
    return ref.split("@", 1)[0].split("/")[-1]
