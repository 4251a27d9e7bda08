"""Talking to a team server: the same operations as :class:`~chainproof.service.Chainproof`,
over HTTP, with the caller's private key kept here.

Uploads are hashed locally and verified again by the server; downloads are re-hashed locally.
Statements that need the caller's signature are fetched with a ``prepare`` call, checked, signed
here, and sent back; the server accepts them only if they are byte-identical to what it records.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from chainproof import capture, errors, identities
from chainproof.attest import IN_TOTO_PAYLOAD_TYPE, Signer, Statement, sign_envelope
from chainproof.digest import Manifest, digest_path
from chainproof.errors import ChainproofError, StepFailedError
from chainproof.lineage.graph import LineageGraph
from chainproof.records.assets import AssetKind, AssetVersion
from chainproof.records.names import DEFAULT_NAMESPACE
from chainproof.records.steps import OutputSpec, Step, StepStatus, now
from chainproof.service import AddResult, RegisteredVersion, StepResult, media_type_for
from chainproof.workflows import Workflows


@dataclass(frozen=True)
class RemoteSettings:
    server: str
    identity: str
    cache_dir: Path
    signing_key_path: Path | None


@dataclass
class _Outcome:
    rule: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "passed": self.passed, "detail": self.detail}


@dataclass
class RemoteGate:
    """A gate result as the server reported it (same attributes as ``GateResult``)."""

    data: dict[str, Any]
    outcomes: list[_Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outcomes = [_Outcome(o["rule"], o["passed"], o["detail"])
                         for o in self.data.get("rules", [])]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k not in ("id", "decision")}


@dataclass
class _Link:
    ref: str
    kind: str
    signer: str | None
    checks: list[str]
    problems: list[str]


@dataclass
class RemoteChainReport:
    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.data.get("ok"))

    @property
    def target(self) -> str:
        return str(self.data["target"])

    @property
    def policy_version(self) -> int:
        return int(self.data["policy_version"])

    @property
    def links(self) -> list[_Link]:
        return [_Link(x["ref"], x["kind"], x.get("signer"), x["checks"], x["problems"])
                for x in self.data["links"]]

    def to_dict(self) -> dict[str, Any]:
        return self.data


@dataclass
class RemoteAuditReport:
    data: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return self.data


@dataclass
class RemoteLoaded:
    path: Path
    data: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def checks(self) -> list[str]:
        return [*self.data["checks"], "downloaded bytes re-hash to the approved digest"]

    def to_dict(self) -> dict[str, Any]:
        return {**self.data, "path": str(self.path), "checks": self.checks}


def _version(d: dict[str, Any]) -> AssetVersion:
    return AssetVersion(namespace=d["namespace"], name=d["name"], kind=AssetKind(d["kind"]),
                        version=d["version"], digest=d["digest"], size=d["size"],
                        media_type=d["media_type"], is_directory=d["is_directory"],
                        created_at=d["created_at"], created_by=d["created_by"],
                        producer_step=d.get("producer_step"))


def _registered(d: dict[str, Any]) -> RegisteredVersion:
    return RegisteredVersion(d["model"], int(d["version"]), _version(d["asset"]),
                             bool(d["asset_created"]))


def _step(d: dict[str, Any]) -> Step:
    return Step(id=d["id"], namespace=d["namespace"], kind=d["kind"], identity=d["identity"],
                status=StepStatus(d["status"]), command=tuple(d["command"]),
                started_at=d["started_at"], ended_at=d["ended_at"],
                parameters=d.get("parameters", {}), environment=d.get("environment", {}),
                code_revision=d.get("code_revision", {}), error=d.get("error"),
                inputs=tuple(d.get("inputs", ())), outputs=tuple(d.get("outputs", ())))


class RemoteChainproof(Workflows):
    """A client of ``chainproof server``; see the module docstring."""

    def __init__(self, server: str, token: str, *, signing_key_path: Path | None = None,
                 cache_dir: Path | None = None, transport: httpx.BaseTransport | None = None,
                 timeout: float = 300.0) -> None:
        if not token:
            raise errors.AuthenticationError("no token", hint="set CHAINPROOF_TOKEN")
        self._http = httpx.Client(base_url=server.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"},
                                  transport=transport)
        key = signing_key_path or (Path(os.environ["CHAINPROOF_SIGNING_KEY"])
                                   if os.environ.get("CHAINPROOF_SIGNING_KEY") else None)
        self.settings = RemoteSettings(server=server, identity="(token)",
                                       cache_dir=cache_dir or Path.home() / ".cache" / "chainproof",
                                       signing_key_path=key)
        self._signer: Signer | None = None

    # --- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteChainproof:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise errors.DatabaseError(f"cannot reach the chainproof server "
                                       f"{self.settings.server}: {exc}",
                                       hint="check CHAINPROOF_SERVER") from None
        if response.status_code >= 400:
            self._raise(response)
        return response.json() if response.content else None

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:500]}
        if isinstance(body, dict) and "detail" in body and "message" not in body:
            body = {"error": "BadInputError", "message": f"invalid request: {body['detail']}"}
        cls = getattr(errors, str(body.get("error")), None)
        if not (isinstance(cls, type) and issubclass(cls, ChainproofError)):
            cls = errors.AuthenticationError if response.status_code == 401 else (
                errors.PermissionDeniedError if response.status_code == 403
                else errors.BadInputError)
        message = str(body.get("message", response.reason_phrase))
        if issubclass(cls, errors.VerificationError):
            raise cls(message, hint=body.get("hint"), problems=body.get("problems") or [])
        raise cls(message, hint=body.get("hint"))

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            if self.settings.signing_key_path is None:
                raise errors.WorkspaceError("no signing key for this identity",
                                            hint="set CHAINPROOF_SIGNING_KEY to your private key")
            self._signer = identities.load_signer(self.settings.signing_key_path)
        return self._signer

    def _sign(self, prepared: dict[str, Any]) -> str | None:
        if prepared.get("payload") is None:
            return None
        payload = base64.b64decode(prepared["payload"])
        Statement.from_bytes(payload)  # refuse to sign anything that is not a statement
        return sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [self.signer]).to_json()

    # --- bytes ------------------------------------------------------------------------------------

    def _upload_file(self, path: Path, digest: str) -> None:
        with path.open("rb") as fh:
            self._call("PUT", f"/v1/blobs/{digest}", content=fh,
                       headers={"Content-Type": "application/octet-stream"})

    def _upload(self, path: Path) -> tuple[str, int, bool]:
        computed = digest_path(path)
        if computed.is_directory:
            assert computed.manifest is not None
            for entry in computed.manifest.entries:
                self._upload_file(path / entry.path, f"sha256:{entry.digest}")
            with tempfile.NamedTemporaryFile() as tmp:
                tmp.write(computed.manifest.canonical_bytes())
                tmp.flush()
                self._upload_file(Path(tmp.name), computed.ref)
        else:
            self._upload_file(path, computed.ref)
        return computed.ref, computed.size, computed.is_directory

    def _download(self, digest: str, dest: Path, *, within: str | None = None) -> None:
        partial = dest.with_name(dest.name + f".partial-{uuid.uuid4().hex[:8]}")
        params = {"within": within} if within else None
        try:
            with self._http.stream("GET", f"/v1/blobs/{digest}", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise(response)
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
            if digest_path(partial).ref != digest:
                raise errors.DigestMismatchError(f"the server sent bytes that do not match "
                                                 f"{digest}", hint="report this server")
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)

    def materialize(self, version: AssetVersion | str, dest: Path | None = None) -> Path:
        if isinstance(version, str):
            version = self.resolve(version)
        target = dest or self.settings.cache_dir / version.hexdigest / version.name
        if target.exists():
            if digest_path(target).ref != version.digest:
                raise errors.DigestMismatchError(
                    f"the cached copy of {version.ref} at {target} does not match",
                    hint=f"delete {target}")
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if version.is_directory:
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
            try:
                self._download(version.digest, staging / ".manifest")
                manifest = Manifest.from_bytes((staging / ".manifest").read_bytes())
                (staging / ".manifest").unlink()
                for entry in manifest.entries:
                    out = staging / entry.path
                    out.parent.mkdir(parents=True, exist_ok=True)
                    self._download(f"sha256:{entry.digest}", out, within=version.digest)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            self._download(version.digest, target)
        return target

    # --- assets and steps -------------------------------------------------------------------------

    def add(self, path: Path | str, *, kind: str | AssetKind, name: str,
            namespace: str = DEFAULT_NAMESPACE, media_type: str | None = None) -> AddResult:
        path = Path(path)
        digest, _, is_dir = self._upload(path)
        body = {"namespace": namespace, "name": name, "kind": str(AssetKind.parse(str(kind))),
                "digest": digest, "is_directory": is_dir,
                "media_type": media_type or media_type_for(path, is_dir)}
        answer = self._call("POST", "/v1/assets", json=body)
        return AddResult(_version(answer), bool(answer["created"]))

    def resolve(self, ref: str, *, namespace: str | None = None) -> AssetVersion:
        if namespace and "/" not in ref.split("@", 1)[0]:
            ref = f"{namespace}/{ref}"
        return _version(self._call("GET", f"/v1/resolve/{ref}"))

    def all_versions(self, *, namespace: str | None = None,
                     kind: str | None = None) -> list[AssetVersion]:
        params = {k: v for k, v in (("namespace", namespace), ("kind", kind)) if v}
        return [_version(v) for v in self._call("GET", "/v1/assets", params=params)]

    def show(self, ref: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/assets/{ref}"))

    def lineage(self, ref: str, *, direction: str = "upstream") -> LineageGraph:
        data = self._call("GET", f"/v1/lineage/{ref}", params={"direction": direction})
        graph = LineageGraph(root=data["root"], direction=data["direction"])
        for v in data["versions"]:
            graph.versions[v["ref"]] = _version(v)
        for s in data["steps"]:
            graph.steps[s["id"]] = _step(s)
        graph.edges = {(e["from"], e["to"]) for e in data["edges"]}
        return graph

    def explain(self, ref: str, *, verify: bool = True) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/explain/{ref}", params={"verify": verify}))

    def verify(self, ref: str | None = None) -> list[AssetVersion]:
        path = f"/v1/verify-bytes/{ref}" if ref else "/v1/verify-bytes"
        refs = self._call("GET", path)["verified"]
        return [self.resolve(r) for r in refs] if ref else [
            AssetVersion(namespace="", name=r, kind=AssetKind.DATASET, version=0, digest="",
                         size=0, media_type="", is_directory=False, created_at="",
                         created_by="") for r in refs]

    def verify_chain(self, ref: str) -> RemoteChainReport:
        return RemoteChainReport(self._call("GET", f"/v1/verify/{ref}"))

    def export_attestations(self, ref: str) -> list[str]:
        return list(self._call("GET", f"/v1/attestations/{ref}"))

    def record_step(self, *, kind: str, inputs: Sequence[str], outputs: Sequence[OutputSpec],
                    command: Sequence[str] = (), parameters: dict[str, Any] | None = None,
                    started_at: str, ended_at: str | None = None, error: str | None = None,
                    namespace: str = DEFAULT_NAMESPACE, cwd: Path | None = None) -> StepResult:
        stored = []
        if error is None:
            for spec in outputs:
                if not spec.path.exists():
                    error = f"output {spec.path} was not produced by the step"
                    break
            if error is None:
                for spec in outputs:
                    digest, size, is_dir = self._upload(spec.path)
                    stored.append({"kind": spec.kind.value, "name": spec.name,
                                   "namespace": spec.namespace, "digest": digest, "size": size,
                                   "is_directory": is_dir,
                                   "media_type": media_type_for(spec.path, is_dir)})
        env = capture.environment()
        body = {"id": uuid.uuid4().hex, "kind": kind, "namespace": namespace,
                "inputs": [str(i) for i in inputs], "outputs": stored,
                "command": list(command), "parameters": parameters or {},
                "started_at": started_at, "ended_at": ended_at or now(),
                "environment": env.summary(),
                "code_revision": capture.code_revision(cwd).to_dict(), "error": error}
        envelope = None
        if stored and error is None:
            envelope = self._sign(self._call("POST", "/v1/steps/prepare", json=body))
        answer = self._call("POST", "/v1/steps", json={"step": body, "envelope": envelope})
        if error:
            raise StepFailedError(f"step {kind} failed: {error}",
                                  hint="the failure is recorded; no outputs were registered")
        return StepResult(_step(answer["step"]), [_version(v) for v in answer["outputs"]])

    def load_model(self, ref: str, *, allow_override: bool = False,
                   dest: Path | None = None) -> RemoteLoaded:
        data = self._call("GET", f"/v1/load/{ref}", params={"allow_override": allow_override})
        version = self.resolve(data["asset"])
        path = self.materialize(version, dest)
        return RemoteLoaded(path, data)

    # --- identities, keys, roles, tokens, trust ---------------------------------------------------

    def create_identity(self, name: str, kind: str = "person") -> None:
        self._call("POST", "/v1/identities", json={"name": name, "kind": kind})

    def register_key(self, identity: str, public_pem: bytes) -> str:
        answer = self._call("POST", "/v1/keys", json={"identity": identity,
                                                      "public_pem": public_pem.decode()})
        return str(answer["keyid"])

    def rotate_key(self, identity: str, public_pem: bytes, reason: str = "rotated") -> str:
        return str(self._call("POST", "/v1/keys/rotate",
                              json={"identity": identity, "public_pem": public_pem.decode(),
                                    "reason": reason})["keyid"])

    def revoke_key(self, keyid: str, reason: str) -> None:
        self._call("POST", f"/v1/keys/{keyid}/revoke", json={"reason": reason})

    def key_list(self, identity: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/keys",
                               params={"identity": identity} if identity else None))

    def grant_role(self, identity: str, role: str, namespace: str) -> None:
        self._call("POST", "/v1/roles", json={"identity": identity, "role": role,
                                              "namespace": namespace})

    def revoke_role(self, identity: str, role: str, namespace: str) -> None:
        self._call("POST", "/v1/roles/revoke", json={"identity": identity, "role": role,
                                                     "namespace": namespace})

    def role_list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/roles"))

    def set_namespace_mode(self, namespace: str, mode: str) -> None:
        self._call("PUT", f"/v1/namespaces/{namespace}", json={"mode": mode})

    def create_token(self, identity: str, expires_in: timedelta) -> tuple[str, str]:
        hours = max(1, int(expires_in.total_seconds() // 3600))
        answer = self._call("POST", "/v1/tokens", json={"identity": identity,
                                                        "expires_hours": hours})
        return str(answer["id"]), str(answer["token"])

    def revoke_token(self, token_id: str) -> None:
        self._call("POST", f"/v1/tokens/{token_id}/revoke")

    def set_trust_policy(self, text: str) -> int:
        return int(self._call("PUT", "/v1/trust", json={"document": text})["version"])

    def trust_document(self) -> tuple[int, str | None]:
        answer = self._call("GET", "/v1/trust")
        return int(answer["version"]), answer["document"]

    # --- registry and promotion -------------------------------------------------------------------

    def create_model(self, model: str) -> None:
        self._call("POST", "/v1/models", json={"model": model})

    def register_model_version(self, model: str, asset_ref: str) -> int:
        return int(self._call("POST", "/v1/model-versions",
                              json={"model": model, "asset": asset_ref})["version"])

    def register_model_file(self, model: str, path: Path | str, *, asset_name: str | None = None,
                            media_type: str | None = None) -> RegisteredVersion:
        path = Path(path)
        computed = digest_path(path)
        if computed.is_directory:
            digest, _, _ = self._upload(path)
            return self.register_model_stored(model, digest=digest, asset_name=asset_name,
                                              media_type=media_type or media_type_for(path, True),
                                              is_directory=True)
        params = {"model": model, "digest": computed.ref,
                  "media_type": media_type or media_type_for(path, False)}
        if asset_name:
            params["asset_name"] = asset_name
        with path.open("rb") as fh:  # one request: the server stores and registers
            answer = self._call("POST", "/v1/model-versions/upload", params=params, content=fh,
                                headers={"Content-Type": "application/octet-stream"})
        return _registered(answer)

    def register_model_stored(self, model: str, *, digest: str, asset_name: str | None = None,
                              media_type: str = "application/octet-stream",
                              is_directory: bool = False) -> RegisteredVersion:
        answer = self._call("POST", "/v1/model-versions", json={
            "model": model, "digest": digest, "asset_name": asset_name,
            "media_type": media_type, "is_directory": is_directory})
        return _registered(answer)

    def set_alias(self, model: str, version: int, alias: str) -> None:
        self._call("PUT", "/v1/aliases", json={"model": model, "version": version,
                                               "alias": alias})

    def resolve_alias(self, model: str, alias: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/aliases/{model}", params={"alias": alias}))

    def model_versions(self, model: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/models/{model}"))

    def promotion_requests(self, status: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/promotions",
                               params={"status": status} if status else None))

    def promotion_policy(self) -> tuple[int, str]:
        answer = self._call("GET", "/v1/policy")
        return int(answer["version"]), str(answer["document"])

    def set_promotion_policy(self, document: str) -> int:
        return int(self._call("PUT", "/v1/policy", json={"document": document})["version"])

    def check_promotion(self, model: str, version: int, alias: str) -> RemoteGate:
        return RemoteGate(self._call("GET", "/v1/policy/check",
                                     params={"model": model, "version": version,
                                             "alias": alias}))

    def check_request(self, request_id: str) -> RemoteGate:
        return RemoteGate(self._call("GET", f"/v1/promotions/{request_id}/gate"))

    def request_promotion(self, model: str, version: int, alias: str) -> str:
        return str(self._call("POST", "/v1/promotions",
                              json={"model": model, "version": version, "alias": alias})["id"])

    def review(self, request_id: str, decision: str, reason: str | None) -> dict[str, Any]:
        body = {"decision": decision, "reason": reason}
        envelope = self._sign(self._call("POST", f"/v1/promotions/{request_id}/reviews/prepare",
                                         json=body))
        return dict(self._call("POST", f"/v1/promotions/{request_id}/reviews",
                               json={**body, "envelope": envelope}))

    def approve(self, request_id: str, reason: str | None = None) -> str | None:
        answer = self.review(request_id, "approve", reason)
        if answer.get("auto_executable"):
            return self.execute_promotion(request_id, auto=True)[1]
        return None

    def reject(self, request_id: str, reason: str) -> None:
        self.review(request_id, "reject", reason)

    def execute_promotion(self, request_id: str, *, auto: bool = False
                          ) -> tuple[RemoteGate, str]:
        prepared = self._call("POST", f"/v1/promotions/{request_id}/execute/prepare",
                              json={"auto": auto})
        answer = self._call("POST", f"/v1/promotions/{request_id}/execute",
                            json={"auto": auto, "envelope": self._sign(prepared)})
        return RemoteGate(answer), str(answer["decision"])

    def force_promotion(self, model: str, version: int, alias: str,
                        reason: str) -> tuple[RemoteGate, str]:
        body = {"model": model, "version": version, "alias": alias, "reason": reason}
        prepared = self._call("POST", "/v1/promotions/force/prepare", json=body)
        answer = self._call("POST", "/v1/promotions/force",
                            json={**body, "envelope": self._sign(prepared)})
        return RemoteGate(answer), str(answer["decision"])

    # --- audit ------------------------------------------------------------------------------------

    def audit_verify(self, witness_notes: Sequence[str] = ()) -> RemoteAuditReport:
        return RemoteAuditReport(self._call("POST", "/v1/audit/verify",
                                            json={"witness_notes": list(witness_notes)}))

    def audit_log(self, *, action: str | None = None, actor: str | None = None,
                  obj: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("action", action), ("actor", actor), ("object", obj),
                                    ("limit", limit)) if v is not None}
        return list(self._call("GET", "/v1/audit/log", params=params))

    def latest_checkpoint(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/audit/checkpoint"))

    def prove(self, seq: int, size: int | None = None) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/audit/proof/{seq}",
                               params={"size": size} if size else None))
