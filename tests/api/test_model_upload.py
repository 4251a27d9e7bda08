"""Model upload over HTTP (``POST /v1/model-versions/upload`` and the digest form of
``POST /v1/model-versions``), request body limits, the bearer token on every route, and the
route class that fills callers from the token.

Attacks are made the way a remote caller would (raw requests with missing, bogus or foreign
tokens, wrong digests, oversized or chunked bodies); every refusal must leave the object store,
the asset and model tables and the log as they were (a 403 adds one ``access.denied`` entry)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from attacks import log_entries_since
from sqlalchemy import text

from chainproof.client import RemoteChainproof
from chainproof.errors import PermissionDeniedError
from chainproof.records.assets import AssetKind
from chainproof.service import Chainproof, media_type_for
from chainproof.wire import MAX_JSON_BODY

NS = "warehouse"
MODEL = f"{NS}/fraud-review"
UPLOAD = "/v1/model-versions/upload"
TABLES = ("assets", "asset_versions", "models", "model_versions", "checkpoints")
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
RemoteFactory = Callable[..., RemoteChainproof]  # the `remote` fixture (tests/api/conftest.py)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def auth(client: RemoteChainproof) -> dict[str, str]:
    return {"Authorization": client._http.headers["Authorization"]}


def admin_headers(cp: Chainproof) -> dict[str, str]:
    _, token = cp.create_token(cp.identity, timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}


def snapshot(cp: Chainproof) -> dict[str, Any]:
    """What a request could have written: table row counts, the log size, the stored blobs."""
    with cp.engine.connect() as conn:
        state: dict[str, Any] = {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}
        state["log"] = int(conn.execute(text("SELECT size FROM log_head")).scalar_one())
    state["blobs"] = frozenset(cp.store.iter_digests())
    return state



def assert_only_denied(cp: Chainproof, before: dict[str, Any], identity: str) -> None:
    """A 403: one access.denied entry (with its checkpoint); no row, no registration."""
    after = snapshot(cp)
    [entry] = log_entries_since(cp, before["log"])
    assert entry["action"] == "access.denied" and entry["detail"]["identity"] == identity
    assert after["checkpoints"] == before["checkpoints"] + 1
    for key in ("assets", "asset_versions", "models", "model_versions"):
        assert after[key] == before[key], key


# --- registering over HTTP ------------------------------------------------------------------------


def test_remote_register_file_directory_and_digest(
        cp: Chainproof, remote: RemoteFactory, server: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The client's register_model_file (one request for a file; blobs then the digest for a
    directory) and register_model_stored do what the embedded service does."""
    trainer = remote("svc-trainer", ("trainer",))
    trainer.create_model(MODEL)
    model = tmp_path / "model.pkl"
    model.write_bytes(b"\x80\x04K\x01." + os.urandom(64))
    before = snapshot(cp)
    first = trainer.register_model_file(MODEL, model)
    assert (first.model, first.version, first.asset_created) == (MODEL, 1, True)
    assert (first.asset.ref, first.asset.kind) == (f"{NS}/fraud-review@1", AssetKind.MODEL)
    assert first.asset.digest == sha(model.read_bytes())
    assert first.asset.media_type == media_type_for(model, False)
    assert first.asset.created_by == "svc-trainer"
    assert cp.store.read_bytes(first.asset.digest) == model.read_bytes()
    after = snapshot(cp)
    assert [e["action"] for e in log_entries_since(cp, before["log"])] == [
        "asset.version.add", "registry.version.add"]
    assert after["checkpoints"] == before["checkpoints"] + 1  # one transaction
    again = trainer.register_model_file(MODEL, model)
    assert (again.version, again.asset_created, again.asset) == (2, False, first.asset)
    named = trainer.register_model_file(MODEL, model, asset_name="fraud-weights",
                                        media_type="application/x-weights")
    assert (named.version, named.asset.ref) == (3, f"{NS}/fraud-weights@1")
    assert named.asset.media_type == "application/x-weights"
    folder = tmp_path / "saved"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "data").write_bytes(b"weights")
    tree = trainer.register_model_file(MODEL, folder)
    assert tree.version == 4 and tree.asset.is_directory and tree.asset.size == 12
    assert tree.asset.ref == f"{NS}/fraud-review@2"
    other = tmp_path / "other.bin"
    other.write_bytes(b"uploaded first, registered second")
    digest, _, _ = trainer._upload(other)
    stored = trainer.register_model_stored(MODEL, digest=digest, asset_name="uploaded")
    assert (stored.version, stored.asset.ref, stored.asset_created) == (5, f"{NS}/uploaded@1",
                                                                        True)
    # the CLI against the server takes the same path
    token = trainer._http.headers["Authorization"].removeprefix("Bearer ")
    monkeypatch.setenv("CHAINPROOF_SERVER", server)
    monkeypatch.setenv("CHAINPROOF_TOKEN", token)
    from chainproof.cli.main import main

    capsys.readouterr()
    assert main(["registry", "register", MODEL, "--file", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"model": MODEL, "version": 6,
                                                   "asset": f"{NS}/fraud-review@3"}
    versions = cp.model_versions(MODEL)["versions"]
    assert [v["asset"] for v in versions] == [
        f"{NS}/fraud-review@1", f"{NS}/fraud-review@1", f"{NS}/fraud-weights@1",
        f"{NS}/fraud-review@2", f"{NS}/uploaded@1", f"{NS}/fraud-review@3"]
    assert cp.audit_verify().size == snapshot(cp)["log"]


def test_upload_refusals_write_nothing(cp: Chainproof, remote: RemoteFactory, server: str,
                                      tmp_path: Path) -> None:
    """Wrong, foreign or malformed digests, missing or bogus tokens, foreign identities: each
    refused with its status; nothing stored (401/400) and nothing registered (403)."""
    trainer = remote("svc-trainer", ("trainer",))
    trainer.create_model(MODEL)
    outsider = remote("svc-outsider", ("trainer", "admin"), namespace="sandbox")
    reader = remote("svc-reader", ("reader",))
    data = b"the reviewed model " + os.urandom(32)
    digest = sha(data)
    big = os.urandom(MAX_JSON_BODY + 4096)  # takes the streamed path
    revoked_id, revoked = cp.create_token("svc-trainer", timedelta(hours=1))
    cp.revoke_token(revoked_id)

    def upload(body: bytes, headers: dict[str, str], **params: str) -> httpx.Response:
        return httpx.post(f"{server}{UPLOAD}", params={"model": MODEL, **params}, content=body,
                          headers={**headers, "Content-Type": "application/octet-stream"},
                          timeout=60)

    before = snapshot(cp)
    for body, params, status, message in [
        (data, {"digest": sha(b"other bytes")}, 400, "hash to"),
        (big, {"digest": sha(b"other bytes")}, 400, "hash to"),
        (data, {"digest": "blake3:" + hashlib.sha256(data).hexdigest()}, 400, "SHA-256"),
        (data, {"digest": digest.upper()}, 400, "malformed digest"),
        (data, {"digest": digest + "00"}, 400, "malformed digest"),
        (data, {"digest": "sha256:../../etc/passwd"}, 400, "malformed digest"),
    ]:
        response = upload(body, auth(trainer), **params)
        assert response.status_code == status, (params, response.text)
        assert message in response.json()["message"]
    for body in (data, big):
        for headers in ({}, {"Authorization": "Bearer cpt_bogus"},
                        {"Authorization": "Basic dHJhaW5lcjp0cmFpbmVy"}):
            assert upload(body, headers, digest=sha(body)).status_code == 401
    assert upload(data, {"Authorization": f"Bearer {revoked}"}, digest=digest).status_code == 401
    response = httpx.post(f"{server}{UPLOAD}", params={"digest": digest}, content=data,
                          headers=auth(trainer))
    assert response.status_code == 422  # no model
    assert snapshot(cp) == before  # not even the bytes were stored

    # digest form of POST /v1/model-versions
    for payload, status in [
        ({"model": MODEL, "asset": f"{NS}/fraud-review@1", "digest": digest}, 422),
        ({"model": MODEL}, 422),
        ({"model": MODEL, "asset_name": "x"}, 422),
        ({"model": MODEL, "digest": "blake3:" + "ab" * 32}, 400),
        ({"model": MODEL, "digest": "md5:" + "ab" * 16}, 400),
        ({"model": MODEL, "digest": sha(b"never uploaded")}, 400),
        ({"model": MODEL, "digest": sha(b"never uploaded"), "is_directory": True}, 400),
    ]:
        response = httpx.post(f"{server}/v1/model-versions", json=payload,
                              headers=auth(trainer))
        assert response.status_code == status, (payload, response.text)
    assert snapshot(cp) == before

    # identities without write:model in the namespace
    assert httpx.put(f"{server}/v1/blobs/{digest}", content=data,
                     headers=auth(trainer)).status_code == 201
    registered = upload(data, auth(trainer), digest=digest)
    assert registered.status_code == 201
    answer = registered.json()
    assert set(answer) == {"model", "version", "asset", "asset_created"}
    assert (answer["model"], answer["version"], answer["asset_created"]) == (MODEL, 1, True)
    assert answer["asset"]["ref"] == f"{NS}/fraud-review@1"
    assert answer["asset"]["kind"] == "model" and answer["asset"]["digest"] == digest
    assert answer["asset"]["size"] == len(data)
    for client, name in ((outsider, "svc-outsider"), (reader, "svc-reader")):
        for attempt in (
                lambda c=client: upload(data, auth(c), digest=digest),
                lambda c=client: upload(data, auth(c), digest=digest, asset_name="evil"),
                lambda c=client: httpx.post(f"{server}/v1/model-versions", headers=auth(c),
                                            json={"model": MODEL, "digest": digest}),
                lambda c=client: httpx.post(f"{server}/v1/model-versions", headers=auth(c),
                                            json={"model": MODEL,
                                                  "asset": f"{NS}/fraud-review@1"})):
            before = snapshot(cp)
            response = attempt()
            assert response.status_code == 403, response.text
            # a reader holds no writing role at all: refused before its bytes are stored
            message = response.json()["message"]
            assert "write:model" in message or "may not upload bytes" in message, message
            assert_only_denied(cp, before, name)
        with pytest.raises(PermissionDeniedError):
            client.register_model_file(MODEL, _file(tmp_path, data))
    assert [v["version"] for v in cp.model_versions(MODEL)["versions"]] == [1]

    # other refusals that reach the database write nothing there
    for params, status in [({"model": f"{NS}/ghost"}, 404),
                           ({"asset_name": "../escape"}, 400),
                           ({"asset_name": "x" * 301}, 422)]:
        before = snapshot(cp)
        response = httpx.post(f"{server}{UPLOAD}", params={"model": MODEL, "digest": digest,
                                                          **params},
                              content=data, headers=auth(trainer))
        assert response.status_code == status, (params, response.text)
        assert {k: v for k, v in snapshot(cp).items() if k != "blobs"} == \
            {k: v for k, v in before.items() if k != "blobs"}


def _file(folder: Path, data: bytes) -> Path:
    path = folder / "upload.bin"
    path.write_bytes(data)
    return path


def test_alias_read_needs_read_in_the_models_namespace(
        cp: Chainproof, remote: RemoteFactory, server: str, tmp_path: Path) -> None:
    """An identity with roles only elsewhere gets 403 (logged), even for names that do not
    exist; a reader of the namespace gets where the alias points."""
    cp.create_model(MODEL)
    registered = cp.register_model_file(MODEL, _file(tmp_path, b"model"))
    cp.set_alias(MODEL, registered.version, "staging")
    outsider = remote("svc-outsider", ("reader", "trainer", "deployer"), namespace="sandbox")
    for model, alias in ((MODEL, "staging"), (MODEL, "ghost"), (f"{NS}/ghost", "staging")):
        before = snapshot(cp)
        response = httpx.get(f"{server}/v1/aliases/{model}", params={"alias": alias},
                             headers=auth(outsider))
        assert response.status_code == 403, response.text
        assert_only_denied(cp, before, "svc-outsider")
        assert snapshot(cp)["log"] == before["log"] + 1
    with pytest.raises(PermissionDeniedError, match="needs permission read"):
        outsider.resolve_alias(MODEL, "staging")
    reader = remote("svc-reader", ("reader",))
    before = snapshot(cp)
    target = reader.resolve_alias(MODEL, "staging")
    assert snapshot(cp) == before
    assert (target["model"], target["alias"], target["version"]) == (MODEL, "staging", 1)
    assert target["digest"] == registered.asset.digest == sha(b"model")
    assert target["asset"] == f"{NS}/fraud-review@1"
    assert target["override"] is False and target["decision"] is None
    assert target["moved_by"] == cp.identity and target["moved_at"]
    response = httpx.get(f"{server}/v1/aliases/{MODEL}", params={"alias": "ghost"},
                         headers=auth(reader))
    assert response.status_code == 404


# --- body limits ----------------------------------------------------------------------------------


def _chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _padded(value: dict[str, Any], length: int) -> bytes:
    """``value`` as a JSON body of exactly ``length`` bytes (padded with whitespace)."""
    core = json.dumps(value).encode()
    return core[:-1] + b" " * (length - len(core)) + b"}"


@SQLITE_ONLY
def test_json_body_limit_and_larger_blob_limit(cp: Chainproof, server: str) -> None:
    """JSON bodies stop at 2 MiB (413 before anything is parsed); the upload endpoint and
    /v1/blobs/ take larger bodies, with or without a Content-Length."""
    headers = {**admin_headers(cp), "Content-Type": "application/json"}
    before = snapshot(cp)
    at_limit = httpx.post(f"{server}/v1/audit/verify", headers=headers,
                          content=_padded({"witness_notes": []}, MAX_JSON_BODY))
    assert at_limit.status_code == 200, at_limit.text
    for path, method, value in (
            ("/v1/audit/verify", "POST", {"witness_notes": []}),
            ("/v1/trust", "PUT", {"document": "x"}),
            ("/v1/model-versions", "POST", {"model": MODEL, "asset": "m@1"}),
            ("/v1/assets", "POST", {"name": "x"})):
        response = httpx.request(method, f"{server}{path}", headers=headers,
                                 content=_padded(value, MAX_JSON_BODY + 1))
        assert response.status_code == 413, (path, response.text)
        assert response.json()["error"] == "TooLargeError"
    assert snapshot(cp) == before
    cp.create_model(MODEL)
    big = os.urandom(MAX_JSON_BODY + 1)
    auth_only = admin_headers(cp)
    for chunked in (False, True):
        response = httpx.put(f"{server}/v1/blobs/{sha(big)}", headers=auth_only, timeout=60,
                             content=_chunks(big) if chunked else big)
        assert response.status_code == 201, response.text
        response = httpx.post(f"{server}{UPLOAD}", params={"model": MODEL, "digest": sha(big)},
                              headers=auth_only, timeout=60,
                              content=_chunks(big) if chunked else big)
        assert response.status_code == 201, response.text
    assert [v["digest"] for v in cp.model_versions(MODEL)["versions"]] == [sha(big)] * 2
    assert cp.store.verify(sha(big)) == len(big)


@SQLITE_ONLY
def test_chunked_json_body_over_the_limit_is_413(cp: Chainproof, server: str) -> None:
    headers = {**admin_headers(cp), "Content-Type": "application/json"}
    before = snapshot(cp)
    response = httpx.put(f"{server}/v1/trust", headers=headers,
                         content=_chunks(_padded({"document": "x"}, MAX_JSON_BODY + 1)))
    assert snapshot(cp) == before
    assert response.status_code == 413, response.text


# --- every route needs its token ------------------------------------------------------------------

_PATH_VALUES = {"digest": "sha256:" + "ab" * 32, "ref": f"{NS}/fraud-review@1",
                "model": MODEL, "keyid": "ab" * 32, "token_id": "ab" * 8, "name": NS,
                "request_id": "ab" * 8, "seq": "0", "step_id": "ab" * 16}
_QUERY_VALUES = {"model": MODEL, "digest": "sha256:" + "ab" * 32, "alias": "production",
                 "version": 1, "old": 1, "new": 1, "key": "team"}
_PATTERNS = {"^[0-9a-f]{32}$": "ab" * 16, "^(approve|reject)$": "approve"}
_BODIES = {"/v1/model-versions": {"model": MODEL, "asset": f"{NS}/fraud-review@1"}}


def _example(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """A small instance of a request body schema (required fields only)."""
    if "$ref" in schema:
        return _example(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    if "anyOf" in schema:
        return _example(schema["anyOf"][0], schemas)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: _example(prop, schemas) for name, prop in
                schema.get("properties", {}).items() if name in schema.get("required", ())}
    if kind == "array":
        return []
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "boolean":
        return False
    return _PATTERNS.get(schema.get("pattern", ""), "x")


def _requests(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx arguments) for every operation that declares the bearer scheme."""
    schemas = spec.get("components", {}).get("schemas", {})
    out = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if op.get("security") != [{"bearer": []}]:
                continue
            url = path
            params: dict[str, Any] = {}
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    url = url.replace("{" + p["name"] + "}", str(_PATH_VALUES[p["name"]]))
                elif p["in"] == "query" and p.get("required"):
                    params[p["name"]] = _QUERY_VALUES[p["name"]]
            kwargs: dict[str, Any] = {"params": params}
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                kwargs["json"] = _BODIES.get(path) or _example(body["schema"], schemas)
            elif method in ("post", "put"):
                kwargs["content"] = b"raw bytes"
            out.append((method.upper(), url, kwargs))
    return out


@SQLITE_ONLY
def test_every_token_route_refuses_missing_or_bogus_tokens(cp: Chainproof, server: str) -> None:
    """Enumerated from the live OpenAPI spec: a bogus or missing token gets 401 (or 422 where
    input validation runs first), never an answer, a 403/404 or a server error; and nothing
    is written. Only the health and log-key routes are public."""
    spec = httpx.get(f"{server}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    public = {(method.upper(), path) for path, ops in spec["paths"].items()
              for method, op in ops.items() if "security" not in op}
    assert public == {("GET", "/v1/health"), ("GET", "/v1/log-key")}
    requests = _requests(spec)
    names = {(m, u.split("?")[0]) for m, u, _ in requests}
    assert len(requests) == sum(len(ops) for ops in spec["paths"].values()) - len(public)
    assert ("POST", UPLOAD) in names and ("POST", "/v1/model-versions") in names
    assert ("GET", f"/v1/aliases/{MODEL}") in names
    before = snapshot(cp)
    answers: dict[tuple[str, str], set[int]] = {}
    with httpx.Client(base_url=server, timeout=30) as http:
        for headers in ({"Authorization": "Bearer cpt_bogus"}, {"Authorization": "Bearer x"},
                        {"Authorization": "cpt_bogus"}, {}):
            for method, url, kwargs in requests:
                response = http.request(method, url, headers=headers, **kwargs)
                answers.setdefault((method, url), set()).add(response.status_code)
        assert http.get("/v1/health").json() == {"ok": True}
        assert http.get("/v1/health", headers={"Authorization": "Bearer cpt_bogus"}
                        ).status_code == 200
        assert "BEGIN PUBLIC KEY" in http.get("/v1/log-key").json()["public_pem"]
    wrong = {k: v for k, v in answers.items() if not v <= {401, 422}}
    assert wrong == {}
    # validation before authentication is the exception, not the rule
    validated_first = sorted(k for k, v in answers.items() if 422 in v)
    assert len(validated_first) <= len(answers) // 4, validated_first
    assert snapshot(cp) == before


# --- the route class ------------------------------------------------------------------------------


def test_route_class_refuses_callers_of_the_wrong_kind() -> None:
    """An async endpoint taking a Caller would be authenticated nowhere (it must await its
    PendingCaller); a sync endpoint taking a PendingCaller would never authenticate it: both
    are refused when the route is declared, and no route is added."""
    from fastapi import FastAPI

    from chainproof.api._http import Caller, PendingCaller
    from chainproof.api._http import Route as _Route

    app = FastAPI()
    app.router.route_class = _Route

    async def async_takes_caller(cp: Caller) -> dict[str, Any]:
        return {}

    async def async_takes_both(caller: PendingCaller, cp: Caller) -> dict[str, Any]:
        return {}

    def sync_takes_pending(caller: PendingCaller) -> dict[str, Any]:
        return {}

    def sync_takes_both(cp: Caller, caller: PendingCaller) -> dict[str, Any]:
        return {}

    refused: list[tuple[Callable[..., Any], str]] = [
        (async_takes_caller, "async endpoint async_takes_caller takes a Caller"),
        (async_takes_both, "async endpoint async_takes_both takes a Caller"),
        (sync_takes_pending, "sync_takes_pending takes a PendingCaller"),
        (sync_takes_both, "sync_takes_both takes a PendingCaller")]
    for endpoint, message in refused:
        with pytest.raises(TypeError, match=message):
            app.post(f"/{endpoint.__name__}")(endpoint)

    def sync_ok(cp: Caller) -> dict[str, Any]:
        return {}

    async def async_ok(caller: PendingCaller) -> dict[str, Any]:
        return {}

    async def public() -> dict[str, Any]:
        return {}

    accepted: list[Callable[..., Any]] = [sync_ok, async_ok, public]
    for ok in accepted:
        app.get(f"/{ok.__name__}")(ok)
    paths = app.openapi()["paths"]
    assert set(paths) == {"/sync_ok", "/async_ok", "/public"}
    assert paths["/sync_ok"]["get"]["security"] == [{"bearer": []}]
    assert paths["/async_ok"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/public"]["get"]
    for path in ("/sync_ok", "/async_ok"):  # the caller is not a query parameter
        assert "parameters" not in paths[path]["get"]
