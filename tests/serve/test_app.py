"""The reference prediction service: serves only verified models, swaps atomically after
verification, keeps the last good model when a new one is refused."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from attacks import overwrite_blob
from fastapi.testclient import TestClient
from pipeline_fixtures import NS, Pipeline, act_as
from sklearn.linear_model import LogisticRegression
from sqlalchemy import text

import chainproof
from chainproof.scan import scan_path
from chainproof.serve.app import create_app
from chainproof.service import Chainproof

MODEL = f"{NS}/fraud-review"
REF = f"{MODEL}@production"


def train_sklearn(pipe: Pipeline, tag: str, flip: bool = False) -> int:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] > 0).astype(int)
    clf = LogisticRegression().fit(x, 1 - y if flip else y)
    clf.feature_names_in_ = np.array(["amount", "age"], dtype=object)
    path = pipe.tmp / f"clf-{tag}.joblib"
    joblib.dump(clf, path)
    with chainproof.step("train", inputs=[f"{NS}/feats@1"], namespace=NS,
                         connection=pipe.trainer) as s:
        s.output(path, kind="model", name="fraud-model")
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    pipe.evaluator.record_report(report_kind="scan", subjects=[asset.ref],
                                 report=scan_path(pipe.admin.materialize(asset)).to_dict(),
                                 passed=True, name=f"scan-{tag}")
    (pipe.tmp / f"m-{tag}.json").write_text('{"auc": 0.95}')
    with chainproof.step("evaluate", inputs=[asset.ref], namespace=NS,
                         connection=pipe.evaluator) as s:
        s.output(pipe.tmp / f"m-{tag}.json", kind="metrics", name="fraud-metrics")
    return pipe.trainer.register_model_version(MODEL, asset.ref)


def test_serves_verified_model_and_survives_a_bad_promotion(pipe: Pipeline,
                                                             tmp_path: Path) -> None:
    pipe.promote(train_sklearn(pipe, "a"))
    serving = act_as(pipe.admin, "svc-serving", tmp_path, ("reader",))

    def connect() -> Chainproof:
        return Chainproof.open(serving.settings)

    app = create_app(connect, [REF], poll_seconds=0)
    server = app.state.server
    with TestClient(app) as client:
        status = client.get("/status").json()["models"][0]
        assert status["serving"] and status["version"] == 1 and status["last_refusal"] is None
        rows = [{"amount": 2.0, "age": 0.0}, {"amount": -2.0, "age": 0.0}]
        answer = client.post(f"/predict/{MODEL}", json={"rows": rows}).json()
        assert answer["predictions"] == [1, 0] and answer["digest"] == status["digest"]
        assert client.post("/predict/nope", json={"rows": rows}).status_code == 404
        assert client.post(f"/predict/{MODEL}", json={"rows": []}).status_code == 422

        # version 2 is promoted properly, but its blob is swapped in the store afterwards
        v2 = train_sklearn(pipe, "b", flip=True)
        pipe.promote(v2)
        overwrite_blob(pipe.admin.store, pipe.admin.resolve(f"{NS}/fraud-model@2").digest,
                       b"evil")
        server.check_once()
        status = client.get("/status").json()["models"][0]
        assert status["version"] == 1 and "ProvenanceError" in status["last_refusal"]
        assert client.post(f"/predict/{MODEL}", json={"rows": rows}).json()["predictions"] \
            == [1, 0]

        # a direct database edit pointing production at version 2: refused too
        with pipe.admin.engine.begin() as conn:
            conn.execute(text("UPDATE aliases SET decision_id = NULL WHERE alias = "
                              "'production'"))
        server.check_once()
        assert "UnapprovedModelError" in client.get("/status").json()["models"][0][
            "last_refusal"]

    with pipe.admin.engine.connect() as conn:
        deployments = conn.execute(text("SELECT count(*) FROM log_entries WHERE action = "
                                        "'deployment.record'")).scalar_one()
    assert deployments == 1
