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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from chainproof import capture, errors, identities, wire
from chainproof.attest import (
    CHAINPROOF_APPROVAL_V1,
    CHAINPROOF_PROMOTION_DECISION_V1,
    IN_TOTO_PAYLOAD_TYPE,
    SLSA_PROVENANCE_V1,
    Signer,
    Statement,
    parse_provenance,
    sign_envelope,
)
from chainproof.digest import Manifest, digest_path, hash_bytes
from chainproof.errors import ChainproofError, SignatureError, StepFailedError
from chainproof.ledger import checkpoint as cpmod
from chainproof.ledger.witness import CheckpointMemory, default_checkpoint_folder
from chainproof.lineage.graph import LineageGraph
from chainproof.records.assets import AssetKind, AssetVersion
from chainproof.records.names import DEFAULT_NAMESPACE
from chainproof.records.steps import OutputSpec, Step, StepStatus, now
from chainproof.service import (
    AddResult,
    RegisteredVersion,
    StepResult,
    StepSubmission,
    StoredOutput,
    media_type_for,
)
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
        self._receipts: list[str] = []
        self._stored_environment: str | None = None
        self._log_checked = False
        self._memory = CheckpointMemory(
            Path(os.environ.get("CHAINPROOF_CHECKPOINTS") or default_checkpoint_folder()),
            server.rstrip("/"))

    # --- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def check_log(self) -> None:
        """Verify the server's newest signed checkpoint and a consistency proof from the newest
        one this client verified before (remembered per server in ``CHAINPROOF_CHECKPOINTS``,
        default ``~/.config/chainproof/checkpoints``), then remember it. A smaller tree
        (rollback) or an inconsistent one (split view) raises LedgerIntegrityError naming both
        heads. The log's public key is pinned on first contact (or given by
        ``CHAINPROOF_LOG_PUBKEY``); a server presenting another key is refused."""
        verifier = self._log_verifier()
        try:
            self._request("GET", "/v1/audit/head")
        except errors.NotFoundError:
            return  # a log without a checkpoint yet: nothing to remember
        # The head is fetched again with the memory locked: several clients of one user
        # sharing the memory never take each other's newer head for a rollback.
        self._memory.refresh(
            lambda: str(self._request("GET", "/v1/audit/head")["note"]),
            lambda old, new: self._request("GET", "/v1/audit/consistency",
                                           params={"old": old, "new": new}), verifier)

    def _log_verifier(self) -> cpmod.CheckpointVerifier:
        answer = self._request("GET", "/v1/log-key")
        pinned_path = self._memory.path.with_suffix(".pub.pem")
        given = os.environ.get("CHAINPROOF_LOG_PUBKEY")
        if given:
            pem = Path(given).read_bytes()
        elif pinned_path.exists():
            pem = pinned_path.read_bytes()
        else:
            pem = str(answer["public_pem"]).encode()
            pinned_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            pinned_path.write_bytes(pem)
        if pem.strip() != str(answer["public_pem"]).encode().strip():
            raise errors.LedgerIntegrityError(
                f"the server {self.settings.server} presents another log key than the one "
                "this client pinned", hint=f"if the log key was really replaced, delete "
                                          f"{pinned_path}; otherwise report this server")
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise errors.LedgerIntegrityError("the log's public key is not an Ed25519 key")
        return cpmod.CheckpointVerifier(str(answer["origin"]), key)

    def __enter__(self) -> RemoteChainproof:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if not self._log_checked:
            self._log_checked = True
            self.check_log()
        return self._request(method, path, **kwargs)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.InvalidURL as exc:
            raise errors.BadInputError(f"{self.settings.server!r} is not a server URL ({exc})",
                                       hint="e.g. CHAINPROOF_SERVER=http://127.0.0.1:8700"
                                       ) from None
        except httpx.HTTPError as exc:
            raise errors.ServerUnreachableError(f"cannot reach the chainproof server "
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

    def _sign(self, prepared: dict[str, Any], expect: dict[str, Any],
              predicate_type: str) -> str | None:
        """Sign the statement the server prepared, but only if it is the statement this client
        means to sign: its predicate type and every field in ``expect`` (request id, decision,
        model, version, alias, reason...) must be what the caller asked for. A server that
        swaps the request, the model or the decision gets a SignatureError, and nothing is
        signed."""
        if prepared.get("payload") is None:
            return None
        payload = base64.b64decode(prepared["payload"])
        statement = Statement.from_bytes(payload)  # refuse anything that is not a statement
        problems = []
        if statement.predicate_type != predicate_type:
            problems.append(f"predicate type {statement.predicate_type!r}, not "
                            f"{predicate_type!r}")
        for key, want in expect.items():
            got = statement.predicate.get(key)
            if got != want:
                problems.append(f"{key} is {got!r}, not {want!r}")
        if problems:
            raise SignatureError(
                "the server asked to sign a statement other than the one requested: "
                + "; ".join(problems), hint="report this server; nothing was signed")
        return sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [self.signer]).to_json()

    def _sign_step(self, prepared: dict[str, Any], sub: StepSubmission) -> str | None:
        """Sign a step's provenance only if it describes exactly this step: its id, kind and
        builder, the output digests this client uploaded, and its inputs as dependencies."""
        if prepared.get("payload") is None:
            return None
        payload = base64.b64decode(prepared["payload"])
        statement = Statement.from_bytes(payload)
        problems = []
        if statement.predicate_type != SLSA_PROVENANCE_V1:
            problems.append(f"predicate type {statement.predicate_type!r}")
        else:
            view = parse_provenance(statement)
            if (view.invocation_id, view.step_kind) != (sub.id, sub.kind):
                problems.append(f"it describes step {view.step_kind} {view.invocation_id}, "
                                f"not {sub.kind} {sub.id}")
            subjects = {s.digest.get("sha256") for s in statement.subjects}
            if subjects != {o.digest.split(":", 1)[1] for o in sub.outputs}:
                problems.append("its subjects are not the outputs this client uploaded")
            deps = {i.name for i in view.inputs}
            wanted = {i if "/" in i.split("@", 1)[0] else f"{sub.namespace}/{i}"
                      for i in sub.inputs}
            if not wanted <= deps:
                problems.append(f"inputs missing from its dependencies: {sorted(wanted - deps)}")
        if problems:
            raise SignatureError("the server asked to sign provenance for another step: "
                                 + "; ".join(problems),
                                 hint="report this server; nothing was signed")
        return sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [self.signer]).to_json()

    # --- bytes ------------------------------------------------------------------------------------

    def _upload_file(self, path: Path, digest: str) -> str:
        """Upload one blob; the server's receipt proving this identity uploaded it."""
        with path.open("rb") as fh:
            answer = self._call("PUT", f"/v1/blobs/{digest}", content=fh,
                                headers={"Content-Type": "application/octet-stream"})
        return str(answer.get("receipt", ""))

    def _upload(self, path: Path) -> tuple[str, int, bool]:
        computed = digest_path(path)
        if computed.is_directory:
            assert computed.manifest is not None
            for entry in computed.manifest.entries:
                self._receipts.append(self._upload_file(path / entry.path,
                                                        f"sha256:{entry.digest}"))
            with tempfile.NamedTemporaryFile() as tmp:
                tmp.write(computed.manifest.canonical_bytes())
                tmp.flush()
                self._receipts.append(self._upload_file(Path(tmp.name), computed.ref))
        else:
            self._receipts.append(self._upload_file(path, computed.ref))
        return computed.ref, computed.size, computed.is_directory

    def _take_receipts(self) -> list[str]:
        """The receipts of everything uploaded since the last binding request (sent with it)."""
        taken, self._receipts = self._receipts[-10_000:], []
        return taken

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
        body = wire.AssetBody(namespace=namespace, name=name, kind=AssetKind.parse(str(kind)),
                              digest=digest, is_directory=is_dir,
                              media_type=media_type or media_type_for(path, is_dir),
                              receipts=self._take_receipts())
        answer = self._call("POST", "/v1/assets", json=body.model_dump(mode="json"))
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
        graph.reproduced = {(e["from"], e["to"]) for e in data["edges"] if e.get("reproduced")}
        graph.hidden = int(data.get("hidden") or 0)
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
        stored: list[StoredOutput] = []
        if error is None:
            for spec in outputs:
                if not spec.path.exists():
                    error = f"output {spec.path} was not produced by the step"
                    break
            if error is None:
                for spec in outputs:
                    digest, size, is_dir = self._upload(spec.path)
                    stored.append(StoredOutput(spec.kind, spec.name, spec.namespace, digest,
                                               size, is_dir, media_type_for(spec.path, is_dir)))
        sub = StepSubmission(
            id=uuid.uuid4().hex, kind=kind, namespace=namespace,
            inputs=tuple(str(i) for i in inputs), outputs=tuple(stored),
            command=tuple(command), parameters=dict(parameters or {}), started_at=started_at,
            ended_at=ended_at or now(), environment=self._environment(),
            code_revision=capture.code_revision(cwd).to_dict(), error=error)
        step = wire.StepBody.of(sub).model_dump(mode="json")
        receipts = self._take_receipts()
        envelope = None
        if stored and error is None:
            prepared = self._call("POST", "/v1/steps/prepare",
                                  json={"step": step, "receipts": receipts})
            envelope = self._sign_step(prepared, sub)
        answer = self._call("POST", "/v1/steps", json={"step": step, "envelope": envelope,
                                                       "receipts": receipts})
        if error:
            raise StepFailedError(f"step {kind} failed: {error}",
                                  hint="the failure is recorded; no outputs were registered")
        return StepResult(_step(answer["step"]), [_version(v) for v in answer["outputs"]])

    def _environment(self) -> dict[str, Any]:
        """The step's environment summary; the full distribution list it points at is uploaded
        once per client, so the record's promise that the store holds it is kept."""
        env = capture.environment()
        if self._stored_environment != env.distributions_digest:
            with tempfile.NamedTemporaryFile() as tmp:
                data = capture.distributions_blob(env.distributions)
                tmp.write(data)
                tmp.flush()
                self._upload_file(Path(tmp.name), "sha256:" + hash_bytes(data))
            self._stored_environment = env.distributions_digest
        return env.summary()

    def step_record(self, step_id: str) -> Step:
        return _step(self._call("GET", f"/v1/steps/{step_id}"))

    def step_list(self, *, namespace: str | None = None, kind: str | None = None,
                  identity: str | None = None, limit: int = 100) -> list[Step]:
        params: dict[str, Any] = {k: v for k, v in (("namespace", namespace), ("kind", kind),
                                                    ("identity", identity)) if v is not None}
        params["limit"] = limit
        return [_step(s) for s in self._call("GET", "/v1/steps", params=params)]

    def load_model(self, ref: str, *, allow_override: bool = False,
                   dest: Path | None = None, full_rehash: bool = True) -> RemoteLoaded:
        """The server verifies decision, approvals, chain and scan; this client then downloads
        the bytes and re-hashes them against the approved digest (always in full)."""
        data = self._call("GET", f"/v1/load/{ref}", params={"allow_override": allow_override})
        version = self.resolve(data["asset"])
        if version.digest != data["digest"]:
            raise errors.UnapprovedModelError(
                f"{ref}: the server approved {data['digest']} but its asset {data['asset']} "
                f"holds {version.digest}", hint="report this server")
        target = dest or self.settings.cache_dir / version.hexdigest / version.name
        # No size-and-mtime shortcut here, whatever ``full_rehash`` says: a cached copy is
        # re-hashed like a download, and a stale one is fetched again.
        if target.exists() and digest_path(target).ref != version.digest:
            if target.is_file():
                target.unlink()
            else:
                shutil.rmtree(target)
        path = self.materialize(version, target)
        return RemoteLoaded(path, data)

    def record_deployment(self, model: str, alias: str, version: int, digest: str,
                          decision: str | None, where: str) -> None:
        body = wire.DeploymentBody(model=model, alias=alias, version=version, digest=digest,
                                   decision=decision, where=where)
        self._call("POST", "/v1/deployments", json=body.model_dump(mode="json"))

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

    def revoke_key(self, keyid: str, reason: str, *, compromised: bool = False) -> None:
        self._call("POST", f"/v1/keys/{keyid}/revoke",
                   json={"reason": reason, "compromised": compromised})

    def key_list(self, identity: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/keys",
                               params={"identity": identity} if identity else None))

    def identity_list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/identities"))

    def token_list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/tokens"))

    def namespace_list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/namespaces"))

    def model_list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/models"))

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
        body = wire.ModelVersionBody(model=model, digest=digest, asset_name=asset_name,
                                     media_type=media_type, is_directory=is_directory,
                                     receipts=self._take_receipts())
        answer = self._call("POST", "/v1/model-versions", json=body.model_dump(mode="json"))
        return _registered(answer)

    def set_alias(self, model: str, version: int, alias: str) -> None:
        self._call("PUT", "/v1/aliases", json={"model": model, "version": version,
                                               "alias": alias})

    def set_model_tag(self, model: str, key: str, value: str, *,
                      version: int | None = None) -> None:
        self._call("PUT", "/v1/model-tags", json={"model": model, "version": version,
                                                  "key": key, "value": value})

    def delete_model_tag(self, model: str, key: str, *, version: int | None = None) -> None:
        params: dict[str, Any] = {"model": model, "key": key}
        if version is not None:
            params["version"] = version
        self._call("DELETE", "/v1/model-tags", params=params)

    def set_model_description(self, model: str, description: str, *,
                              version: int | None = None) -> None:
        self._call("PUT", "/v1/model-descriptions", json={
            "model": model, "version": version, "description": description})

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
                                         json=body),
                              {"request": request_id, "decision": decision, "reason": reason},
                              CHAINPROOF_APPROVAL_V1)
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
        envelope = self._sign(prepared, {"request": request_id, "result": "allowed"},
                              CHAINPROOF_PROMOTION_DECISION_V1)
        answer = self._call("POST", f"/v1/promotions/{request_id}/execute",
                            json={"auto": auto, "envelope": envelope})
        return RemoteGate(answer), str(answer["decision"])

    def force_promotion(self, model: str, version: int, alias: str,
                        reason: str) -> tuple[RemoteGate, str]:
        body = {"model": model, "version": version, "alias": alias, "reason": reason}
        prepared = self._call("POST", "/v1/promotions/force/prepare", json=body)
        envelope = self._sign(prepared, {"version": version, "alias": alias,
                                         "result": "override", "reason": reason},
                              CHAINPROOF_PROMOTION_DECISION_V1)
        answer = self._call("POST", "/v1/promotions/force", json={**body, "envelope": envelope})
        return RemoteGate(answer), str(answer["decision"])

    # --- audit ------------------------------------------------------------------------------------

    def log_head(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/audit/head"))

    def consistency(self, old: int, new: int) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/audit/consistency", params={"old": old, "new": new}))

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
