"""The seed's five failures, each played as a real attempt against chainproof.

Every scenario returns the attempts it made; an attempt is CAUGHT only when a real control
raised or reported it, MISSED when it went through, and "not available yet" when the control it
needs is not built in this version (nothing is simulated in its place). Scenarios restore what
they broke (the incident response: restore the blob, revert the edit) so they can run in any
order after the pipeline.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import joblib
from rich.markup import escape
from sqlalchemy import text

from chainproof.demo._data import flip_fraud_labels
from chainproof.demo._model import Attempt, Outcome
from chainproof.demo._pipeline import (
    FRAUD,
    NAMESPACE,
    PIPELINE_DIR,
    VALIDATION,
    Demo,
    requires,
)
from chainproof.errors import (
    ChainproofError,
    DigestMismatchError,
    LedgerIntegrityError,
    PermissionDeniedError,
    PolicyViolationError,
    ProvenanceError,
    ValidationFailedError,
)
from chainproof.ledger import audit
from chainproof.records.assets import AssetKind
from chainproof.records.steps import OutputSpec, now
from chainproof.store import ObjectStore
from chainproof.validate import compare_feature_definitions, validate_dataset

Scenario = Callable[[Demo], list[Attempt]]


def _short(text_: str, limit: int = 150) -> str:
    text_ = " ".join(text_.split())
    return text_ if len(text_) <= limit else text_[: limit - 1] + "…"


def _first_problem(exc: ChainproofError) -> str:
    problems = getattr(exc, "problems", None) or []
    return _short(problems[0] if problems else exc.message)


def _say_attempt(demo: Demo, attempt: Attempt) -> None:
    colour = {Outcome.CAUGHT: "green", Outcome.MISSED: "bold red"}.get(attempt.outcome, "yellow")
    demo.say(f"  [{colour}]{attempt.outcome.value}[/]: {escape(attempt.attack)}\n"
             f"      {escape(_short(attempt.evidence, 200))}")


def _unavailable(scenario: str, attack: str, control: str, needs: str) -> Attempt:
    return Attempt(scenario, attack, control, Outcome.UNAVAILABLE,
                   f"needs the {needs}, which this build does not have yet")


def _audit(demo: Demo) -> Any:
    verifier = audit.load_log_verifier(demo.cp.settings.log_public_path, demo.cp.settings.origin)
    with demo.cp.session() as session:
        return audit.verify_log(session, verifier)


# --- 1. poisoning -------------------------------------------------------------------------------


def poisoning(demo: Demo) -> list[Attempt]:
    """data-eng's account publishes fraud-labels v2 with 10 % of legitimate card orders flipped
    to fraud; the validation gate must refuse it before any training consumes it."""
    assert demo.data is not None
    attack = "poisoned labels: 10 % of legitimate card orders flipped to fraud (fraud-labels v2)"
    control = "data validation gate (label-flip suspicion, class shift, label drift)"
    poisoned, flipped = flip_fraud_labels(demo.data.fraud_labels, demo.data.orders)
    path = demo.workdir / "raw" / "fraud-labels-v2.parquet"
    poisoned.to_parquet(path, index=False)
    added = demo.as_("data-eng").add(path, kind=AssetKind.LABELS, name="fraud-labels",
                                     namespace=NAMESPACE)
    labels_ref = added.version.ref
    demo.say(f"  [red]attacker[/] registers [bold]{labels_ref}[/] ({flipped} labels flipped)")
    report_ref, report = demo.validate_training_data(demo.refs["order-features"], labels_ref)
    try:
        report.raise_for_failure()
    except ValidationFailedError as exc:
        demo.say(f"  [green]refused[/]: {exc.message}; training on {labels_ref} was not run")
        for problem in exc.problems[:4]:
            demo.say(f"    - {escape(_short(problem, 110))}")
        labels_first = sorted(exc.problems, key=lambda p: not p.startswith("labels:"))
        return [Attempt("poisoning", attack, control, Outcome.CAUGHT,
                        _short(f"{report_ref} failed: " + "; ".join(labels_first[:2]), 220),
                        type(exc).__name__)]
    demo.say("  [bold red]MISSED[/]: the poisoned labels passed validation")
    return [Attempt("poisoning", attack, control, Outcome.MISSED,
                    f"{report_ref} passed ({report.labels.issue_rate if report.labels else '?'})")]


# --- 2. feature tampering -----------------------------------------------------------------------


TAMPER_FROM = 'out["amount_usd"] = df["amount"].astype("float64")'
TAMPER_TO = 'out["amount_usd"] = df["amount"].astype("float64") * 100  # now in cents'


def feature_tampering(demo: Demo) -> list[Attempt]:
    """A 'refactor' of features.py silently turns amount_usd into cents; the feature job runs
    it; the feature-meaning gate compares old and new definitions on a pinned probe and checks
    the new feature version for drift before any training may use it."""
    attack = "feature job silently changes meaning: amount_usd now in cents (features.py v2)"
    control = "feature-meaning check on a pinned probe + feature drift gate"
    source = (PIPELINE_DIR / "features.py").read_text()
    if TAMPER_FROM not in source:
        raise AssertionError("features.py no longer contains the line the demo tampers with")
    tampered = demo.workdir / "code-v2" / "features.py"
    tampered.parent.mkdir(parents=True, exist_ok=True)
    tampered.write_text(source.replace(TAMPER_FROM, TAMPER_TO))
    old_code = demo.refs["features.py"]
    new_code = demo.as_("ml-eng").add(tampered, kind=AssetKind.CODE, name="features.py",
                                      namespace=NAMESPACE).version.ref
    new_features = demo.build_features(new_code)
    demo.say(f"  [red]attacker[/] ships [bold]{new_code}[/]; the feature job produced "
             f"[bold]{new_features['order-features']}[/]")
    evaluator = demo.as_("svc-evaluator")
    probe = demo.workdir / "reports" / "feature-probe.parquet"
    demo.paths["probe"] = probe
    assert demo.data is not None
    demo.data.orders.head(2000).to_parquet(probe, index=False)
    meaning = compare_feature_definitions(evaluator.materialize(old_code),
                                          evaluator.materialize(new_code), probe)
    drift = validate_dataset(evaluator.materialize(new_features["order-features"]),
                             reference=evaluator.materialize(demo.refs["order-features"]),
                             config=VALIDATION)
    report_ref = demo.record_report(
        "feature-meaning", "feature-meaning-check",
        {"meaning": meaning.to_dict(), "drift": drift.to_dict()},
        meaning.passed and drift.passed,
        [old_code, new_code, demo.refs["order-features"], new_features["order-features"]])
    changed = [c for c in meaning.columns if c.status != "same"]
    if meaning.passed and drift.passed:
        demo.say("  [bold red]MISSED[/]: the changed feature passed both checks")
        return [Attempt("feature-tampering", attack, control, Outcome.MISSED,
                        f"{report_ref} passed")]
    described = "; ".join(f"{c.column}: {'/'.join(c.kinds)}{_factor(c.details)}"
                          for c in changed)
    drifted = ", ".join(drift.drift.flagged) if drift.drift else ""
    demo.say(f"  [green]refused[/]: feature meaning changed ({escape(described)}); drift in "
             f"{escape(drifted) or 'no column'}; training on the new features was not run")
    return [Attempt("feature-tampering", attack, control, Outcome.CAUGHT,
                    _short(f"{report_ref}: {described}; drift: {drifted}"),
                    "FeatureMeaningReport")]


def _factor(details: dict[str, Any]) -> str:
    slope = details.get("slope")
    return f" (×{slope:.4g})" if isinstance(slope, float) and abs(slope - 1) > 0.05 else ""


# --- 3. substitution ----------------------------------------------------------------------------


def overwrite_blob(store: ObjectStore, digest: str, data: bytes) -> None:
    """What an attacker with write access to the bucket or disk does: replace the bytes at an
    object's address. Uses the store's private layout on purpose: this is an attack."""
    from chainproof.store._local import LocalStore
    from chainproof.store._s3 import S3Store

    hexdigest = digest.split(":", 1)[1]
    if isinstance(store, LocalStore):
        path = store._blob(hexdigest)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        path.write_bytes(data)
        return
    if isinstance(store, S3Store):
        store._client.put_object(Bucket=store.bucket, Key=store._key(hexdigest), Body=data)
        return
    raise TypeError(f"the demo cannot tamper with a {type(store).__name__}")


def _evil_model(demo: Demo, variant: int = 0) -> bytes:
    """A 'model' that never flags fraud: what an attacker would swap in. Each ``variant`` has
    different bytes (identical bytes would just be the same, existing version)."""
    from sklearn.dummy import DummyClassifier

    assert demo.data is not None
    model = DummyClassifier(strategy="constant", constant=0, random_state=variant)
    features = demo.workdir / "runs" / "evil"
    features.mkdir(parents=True, exist_ok=True)
    import numpy as np

    model.fit(np.zeros((2, 23)), np.array([0, 1]))
    path = features / f"fraud-review-{variant}.joblib"
    joblib.dump(model, path)
    return path.read_bytes()


def substitution(demo: Demo) -> list[Attempt]:
    """The evaluated fraud model's bytes are replaced in the object store; then a stolen
    trainer credential registers a model nobody evaluated."""
    attempts = []
    attack = "model file replaced in the object store after evaluation"
    version = demo.cp.resolve(demo.refs[FRAUD.model])
    original = demo.cp.store.read_bytes(version.digest)
    overwrite_blob(demo.cp.store, version.digest, _evil_model(demo))
    demo.say(f"  [red]attacker[/] overwrites {demo.cp.store.location(version.digest)}")
    try:
        caught, missed, got, error, kept, still = _substitution_checks(demo, version)
    finally:
        overwrite_blob(demo.cp.store, version.digest, original)  # restore from backup
    demo.cp.verify(version.ref)
    outcome = Outcome.CAUGHT if not missed and still else Outcome.MISSED
    evidence = (f"{version.ref}: stored bytes hash to {got}…, not {version.digest[:19]}…; "
                f"refused by {', '.join(caught) or 'nothing'}"
                + (f"; NOT refused by {', '.join(missed)}" if missed else "") + f"; {kept}")
    demo.say(f"  [{'green' if outcome is Outcome.CAUGHT else 'bold red'}]{outcome.value}[/]: "
             f"{escape(evidence)}; blob restored")
    attempts.append(Attempt("substitution", attack,
                            "digest re-hash on read + provenance chain + verified load",
                            outcome, evidence, error))
    attempts.append(_stolen_trainer(demo))
    attempts.append(_stolen_token(demo))
    return attempts


@contextmanager
def _team_server(demo: Demo) -> Iterator[str]:
    """The team server over the demo's workspace, on a loopback port, for the duration."""
    import socket
    import threading

    import uvicorn

    from chainproof.api import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(demo.cp.settings), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="chainproof-demo-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("the demo's team server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _stolen_token(demo: Demo) -> Attempt:
    """A stolen API token is not a stolen identity: without the private key it cannot sign."""
    from datetime import timedelta

    from chainproof.attest import Signer, generate_private_key
    from chainproof.client import RemoteChainproof

    attack = ("stolen trainer API token: the attacker pushes a model through the team server, "
              "signing with a key of their own")
    control = "server accepts only statements signed by the identity's registered key"
    token_id, token = demo.cp.create_token("svc-trainer", timedelta(hours=1))
    evil = demo.workdir / "runs" / "stolen-token.joblib"
    evil.parent.mkdir(parents=True, exist_ok=True)
    evil.write_bytes(_evil_model(demo, variant=99))
    with _team_server(demo) as url, RemoteChainproof(url, token) as attacker:
        demo.say(f"  [red]attacker[/] with svc-trainer's token (not its key) talks to {url}")
        attacker._signer = Signer.from_private_key(generate_private_key())  # their own key
        refusal: str | None = None
        try:
            attacker.record_step(kind="train", namespace=NAMESPACE,
                                 inputs=[demo.refs["order-features"], demo.refs["fraud-labels"]],
                                 outputs=[OutputSpec(evil, AssetKind.MODEL, FRAUD.model)],
                                 started_at=now())
        except ChainproofError as exc:
            refusal = f"{type(exc).__name__}: {exc.message}"
        try:
            attacker.set_alias(f"{NAMESPACE}/{FRAUD.model}", 1, "production")
            moved = "the alias moved"
        except ChainproofError as exc:
            moved = f"{type(exc).__name__} (HTTP 403) moving production"
    demo.cp.revoke_token(token_id)  # the incident response
    if refusal is None:
        return Attempt("substitution", attack, control, Outcome.MISSED,
                       "the server recorded a step signed by the attacker's key")
    evidence = f"{refusal}; {moved}; token {token_id} revoked afterwards"
    demo.say(f"  [green]refused[/] by the server: {escape(_short(evidence, 200))}")
    return Attempt("substitution", attack, control, Outcome.CAUGHT, _short(evidence, 240),
                   refusal.split(":", 1)[0])


def _substitution_checks(demo: Demo, version: Any) -> tuple[list[str], list[str], str,
                                                           str | None, str, bool]:
    """Every control that must refuse the swapped bytes: (refused by, not refused by, the
    digest the bytes now have, the first error type, what the running replica serves,
    whether it still serves the evaluated model)."""
    caught: list[str] = []
    missed: list[str] = []
    got, error = "?", None
    try:
        demo.cp.verify(version.ref)
        missed.append("verify")
    except DigestMismatchError as exc:
        caught.append("verify")
        error = type(exc).__name__
        found = re.search(r"got (sha256:[0-9a-f]{12})", str(exc))
        got = found.group(1) if found else got
    try:
        demo.cp.verify_chain(version.ref)
        missed.append("verify_chain")
    except ProvenanceError:
        caught.append("verify_chain")
    if demo.service is None:
        return caught, missed, got, error, "no prediction service in this build", True
    with demo.new_replica() as fresh:
        cold = fresh.status()[FRAUD.model]
    if cold.digest is None and cold.refusal:
        caught.append(f"a new replica's load ({cold.refusal.split(':', 1)[0]})")
    else:
        missed.append("a new replica's load")
    demo.service.poll()
    serving = demo.service.status()[FRAUD.model]
    kept = f"the running replica kept {(serving.digest or 'nothing')[:19]}…"
    return caught, missed, got, error, kept, serving.digest == demo.good[FRAUD.model]


def _unevaluated_model(demo: Demo, trainer_name: str = "svc-trainer") -> str:
    """A model properly signed by the trainer's key but never evaluated, scanned or approved:
    what someone holding the trainer's credential can produce."""
    import chainproof

    trainer = demo.as_(trainer_name)
    folder = demo.workdir / "runs" / "stolen"
    folder.mkdir(parents=True, exist_ok=True)
    variant = 1 + len(list(folder.iterdir()))
    path = folder / f"fraud-review-{variant}.joblib"
    path.write_bytes(_evil_model(demo, variant=variant))
    with chainproof.step("train", inputs=[demo.refs["order-features"], demo.refs["fraud-labels"],
                                          demo.refs["train.py"]],
                         namespace=NAMESPACE, connection=trainer) as s:
        s.output(path, kind="model", name=FRAUD.model)
    assert s.result is not None
    return s.result.outputs[0].ref


def _registered(demo: Demo, asset_ref: str) -> int:
    trainer = demo.as_("svc-trainer")
    return int(trainer.register_model_version(
        f"{NAMESPACE}/{FRAUD.model}", asset_ref))


def _failed_rules(exc: ChainproofError) -> str:
    gate = getattr(exc, "gate", None)
    if gate is None:
        return _first_problem(exc)
    return "; ".join(f"{o.rule}: {o.detail}" for o in gate.outcomes if not o.passed)


def _stolen_trainer(demo: Demo) -> Attempt:
    attack = ("stolen trainer credential: a signed but unevaluated model is registered and "
              "pushed to production")
    control = "promotion gate (evidence, metrics, 2 independent approvals)"
    if not requires("registry"):
        return _unavailable("substitution", attack, control, "registry and promotion gate")
    ref = _unevaluated_model(demo)
    demo.say(f"  [red]attacker[/] with svc-trainer's credential trains {ref} (a constant "
             "'never fraud' model), registers it and pushes it to production")
    model = f"{NAMESPACE}/{FRAUD.model}"
    try:
        version = _registered(demo, ref)
        request = demo.as_("svc-trainer").request_promotion(
            model, version, "production")
        demo.as_("svc-deployer").execute_promotion(request)
    except PolicyViolationError as exc:
        demo.say("  [green]refused[/] by the promotion gate: "
                 + escape(_short(_failed_rules(exc), 160)))
        return Attempt("substitution", attack, control, Outcome.CAUGHT,
                       _short(f"{ref}: {_failed_rules(exc)}", 220), type(exc).__name__)
    except ChainproofError as exc:
        return Attempt("substitution", attack, control, Outcome.CAUGHT,
                       f"{ref}: {_first_problem(exc)}", type(exc).__name__)
    return Attempt("substitution", attack, control, Outcome.MISSED,
                   f"{ref} reached production")


# --- 4. unauthorized promotion ------------------------------------------------------------------


def unauthorized_promotion(demo: Demo) -> list[Attempt]:
    """A trainer promotes its own model; an approver approves a model built from their own
    code; someone edits the production alias in the database directly."""
    scenario = "unauthorized-promotion"
    cases = [("the trainer promotes its own unevaluated model", "access control (only a "
              "deployer executes promotions)"),
             ("ml-eng approves a model built from their own code (with one other approver)",
              "separation of duties: approvers must have authored nothing in the chain"),
             ("direct database edit: production alias pointed at the trainer's model",
              "audit verify (signed Merkle log replay)")]
    if not requires("registry"):
        return [_unavailable(scenario, a, c, "registry (models, aliases, approvals)")
                for a, c in cases]
    attempts = []
    model = f"{NAMESPACE}/{FRAUD.model}"
    trainer = demo.as_("svc-trainer")
    rogue = _registered(demo, _unevaluated_model(demo))
    # 1. The trainer asks for production and executes the promotion itself.
    try:
        request = trainer.request_promotion(model, rogue, "production")
        trainer.execute_promotion(request)
        attempts.append(Attempt(scenario, *cases[0], Outcome.MISSED, "the trainer promoted"))
    except PermissionDeniedError as exc:
        attempts.append(Attempt(scenario, *cases[0], Outcome.CAUGHT, _first_problem(exc),
                                type(exc).__name__))
    # 2. The evaluated model, proposed again: ml-eng (author of features.py and train.py) and
    #    alice approve; the gate counts only alice.
    again = _registered(demo, demo.refs[FRAUD.model])
    try:
        request = demo.as_("svc-deployer").request_promotion(
            model, again, "production")
        demo.as_("ml-eng").approve(request)
        demo.as_("approver-alice").approve(request)
        demo.as_("svc-deployer").execute_promotion(request)
        attempts.append(Attempt(scenario, *cases[1], Outcome.MISSED, "self-approval counted"))
    except PolicyViolationError as exc:
        gate = getattr(exc, "gate", None)
        approvals = next((o for o in (gate.outcomes if gate else []) if o.rule == "approvals"),
                         None)
        independent = approvals is not None and not approvals.passed \
            and "separation of duties" in approvals.detail
        attempts.append(Attempt(scenario, *cases[1],
                                Outcome.CAUGHT if independent else Outcome.MISSED,
                                _short(approvals.detail if approvals else _first_problem(exc),
                                       220), type(exc).__name__))
    except ChainproofError as exc:
        attempts.append(Attempt(scenario, *cases[1], Outcome.CAUGHT, _first_problem(exc),
                                type(exc).__name__))
    attempts.append(_edit_alias(demo, scenario, *cases[2], rogue))
    attempts.append(_forged_evidence(demo, scenario))
    for attempt in attempts:
        _say_attempt(demo, attempt)
    return attempts


def _forged_evidence(demo: Demo, scenario: str) -> Attempt:
    """The trainer, also a trainer in an experiment namespace, records there a passing scan
    report and perfect metrics about its own unevaluated warehouse model, then asks for
    production: evidence counts only from signers the governed namespace trusts for it."""
    attack = ("forged evidence: the trainer records a passing scan and auc 0.99 about its own "
              "model from the experiment namespace 'lab'")
    control = "evidence trust: reports count only from the governed namespace's evaluators"
    model = f"{NAMESPACE}/{FRAUD.model}"
    demo.cp.set_namespace_mode("lab", "experiment")
    demo.cp.grant_role("svc-trainer", "trainer", "lab")
    trainer = demo.as_("svc-trainer")
    ref = _unevaluated_model(demo)
    version = _registered(demo, ref)
    trainer.record_report(report_kind="scan", subjects=[ref], passed=True,
                          report={"verdict": "clean", "note": "trust me"},
                          name="self-scan", namespace="lab")
    demo.say(f"  [red]svc-trainer[/] records in 'lab' a passing scan of its own {ref}")
    try:
        request = demo.as_("svc-deployer").request_promotion(model, version, "production")
        demo.as_("svc-deployer").execute_promotion(request)
    except PolicyViolationError as exc:
        gate = getattr(exc, "gate", None)
        scan = next((o for o in (gate.outcomes if gate else []) if o.rule == "evidence:scan"),
                    None)
        caught = scan is not None and not scan.passed
        return Attempt(scenario, attack, control, Outcome.CAUGHT if caught else Outcome.MISSED,
                       _short(f"evidence:scan: {scan.detail}" if scan else
                              _failed_rules(exc), 220), type(exc).__name__)
    except ChainproofError as exc:
        return Attempt(scenario, attack, control, Outcome.CAUGHT, _first_problem(exc),
                       type(exc).__name__)
    return Attempt(scenario, attack, control, Outcome.MISSED, "the forged evidence counted")


def _edit_alias(demo: Demo, scenario: str, attack: str, control: str, rogue: int) -> Attempt:
    """UPDATE the alias row to the rogue version and digest, run audit verify, then revert."""
    from chainproof.db.tables import AliasRow, ModelRow, ModelVersionRow

    with demo.cp.session() as session, session.begin():
        model = session.query(ModelRow).filter_by(namespace=NAMESPACE,
                                                  name=FRAUD.model).one()
        alias = session.get(AliasRow, (model.id, "production"))
        target = session.query(ModelVersionRow).filter_by(model_id=model.id,
                                                          version=rogue).one()
        if alias is None:
            return _unavailable(scenario, attack, control, "a production alias")
        original = (alias.version, alias.digest)
        forged = (target.version, target.digest)
    statement = text("UPDATE aliases SET version = :v, digest = :d "
                     "WHERE model_id = :m AND alias = 'production'")
    with demo.cp.engine.begin() as conn:
        conn.execute(statement, {"v": forged[0], "d": forged[1], "m": model.id})
    try:
        try:
            _audit(demo)
            outcome, evidence, error = Outcome.MISSED, "audit verify passed after the edit", None
        except LedgerIntegrityError as exc:
            outcome, evidence, error = (Outcome.CAUGHT, "audit verify: " + _first_problem(exc),
                                        type(exc).__name__)
        if demo.service is not None:
            # The running replica sees the alias "move" and must refuse to swap.
            demo.service.poll()
            serving = demo.service.status()[FRAUD.model]
            if serving.digest != demo.good[FRAUD.model]:
                outcome = Outcome.MISSED
                evidence += f"; the running replica SWAPPED to {serving.digest}"
            else:
                reason = (serving.refusal or "no refusal recorded").split(":", 1)[0]
                evidence += f"; the running replica refused the swap ({reason}) and kept v1"
    finally:
        with demo.cp.engine.begin() as conn:
            conn.execute(statement, {"v": original[0], "d": original[1], "m": model.id})
    return Attempt(scenario, attack, control, outcome, evidence, error)


# --- 5. over-broad runner -----------------------------------------------------------------------


def over_broad_runner(demo: Demo) -> list[Attempt]:
    """The training runner writes raw labels, overwrites a model, reads outside its grant."""
    scenario = "over-broad-runner"
    trainer = demo.as_("svc-trainer")
    attempts = []
    assert demo.data is not None
    # 1. Write raw data (labels) it should only read.
    attack = "training runner writes its own fraud labels"
    path = demo.workdir / "runs" / "runner-labels.parquet"
    relaxed = demo.data.fraud_labels.assign(is_fraud=0)
    relaxed.to_parquet(path, index=False)
    try:
        added = trainer.add(path, kind=AssetKind.LABELS, name="fraud-labels",
                            namespace=NAMESPACE)
    except PermissionDeniedError as exc:
        attempts.append(Attempt(scenario, attack, "access control (data-writer role)",
                                Outcome.CAUGHT, _first_problem(exc), type(exc).__name__))
    else:
        try:
            demo.cp.verify_chain(added.version.ref)
            attempts.append(Attempt(scenario, attack, "trust policy (sources)", Outcome.MISSED,
                                    f"{added.version.ref} verified"))
        except ProvenanceError as exc:
            attempts.append(Attempt(
                scenario, attack, "trust policy: only data-eng may register labels",
                Outcome.CAUGHT, f"{added.version.ref} is unusable: {_first_problem(exc)}",
                type(exc).__name__))
    # 2. Overwrite the evaluated model: versions are immutable, so it can only add a new one.
    attack = "training runner overwrites the evaluated fraud model"
    good = demo.cp.resolve(demo.refs[FRAUD.model])
    evil = demo.workdir / "runs" / "runner-model.joblib"
    evil.write_bytes(_evil_model(demo, variant=99))
    try:
        added = trainer.add(evil, kind=AssetKind.MODEL, name=FRAUD.model, namespace=NAMESPACE)
    except PermissionDeniedError as exc:
        attempts.append(Attempt(scenario, attack, "access control (trainer cannot add models "
                                "outside a recorded run)", Outcome.CAUGHT, _first_problem(exc),
                                type(exc).__name__))
    else:
        demo.cp.verify(good.ref)  # raises if the old bytes changed
        unchanged = demo.cp.resolve(good.ref).digest == good.digest
        try:
            demo.cp.verify_chain(added.version.ref)
            chain = "and its chain verified"
            caught = False
        except ProvenanceError as exc:
            chain = "which verify_chain rejects: " + _first_problem(exc).split(": ", 1)[-1]
            caught = True
        attempts.append(Attempt(
            scenario, attack, "immutable versions + provenance (no producing step)",
            Outcome.CAUGHT if unchanged and caught else Outcome.MISSED,
            _short(f"{good.ref} unchanged and still verifies; the upload became a new "
                   f"version {added.version.ref}, {chain}", 300), "ProvenanceError"))
    # 3. Read an asset outside its grant.
    attack = "training runner reads cardholder data in another namespace"
    if not requires("roles"):
        attempts.append(_unavailable(scenario, attack, "roles per namespace (reader grant)",
                                     "roles and permission checks"))
    else:
        secret = demo.workdir / "raw" / "cardholders.parquet"
        demo.data.orders[["customer_id"]].assign(pan="4111********1111").to_parquet(secret)
        ref = demo.cp.add(secret, kind=AssetKind.DATASET, name="cardholders",
                          namespace="finance").version.ref
        try:
            trainer.materialize(ref)
            attempts.append(Attempt(scenario, attack, "roles per namespace", Outcome.MISSED,
                                    f"the trainer read {ref}"))
        except PermissionDeniedError as exc:
            attempts.append(Attempt(scenario, attack, "roles per namespace", Outcome.CAUGHT,
                                    _first_problem(exc), type(exc).__name__))
    for attempt in attempts:
        _say_attempt(demo, attempt)
    return attempts


SCENARIOS: dict[str, Scenario] = {
    "poisoning": poisoning,
    "feature-tampering": feature_tampering,
    "substitution": substitution,
    "unauthorized-promotion": unauthorized_promotion,
    "over-broad-runner": over_broad_runner,
}

DESCRIPTIONS: dict[str, str] = {
    "poisoning": "poisoned or mislabelled training data",
    "feature-tampering": "a feature job silently changes a transformation's meaning",
    "substitution": "the model file is replaced after evaluation",
    "unauthorized-promotion": "a wrong model promoted through weak access",
    "over-broad-runner": "a training runner touches assets outside its grant",
}
