"""Finding and creating a workspace, and reading chainproof's settings.

A workspace is a ``.chainproof/`` folder (found like git finds ``.git``) holding the embedded
SQLite database, the local object store, the log's checkpoint key and a small config file.
Environment variables override each setting, which is how a team points at PostgreSQL and S3:
``CHAINPROOF_DB``, ``CHAINPROOF_STORE``, ``CHAINPROOF_LOG_KEY``, ``CHAINPROOF_IDENTITY``.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from chainproof.errors import WorkspaceError

WORKSPACE_DIR = ".chainproof"
CONFIG_FILE = "config.json"
LOG_KEY_FILE = "keys/log-ed25519.pem"
LOG_PUBLIC_FILE = "log.pub"


@dataclass(frozen=True)
class Settings:
    """Everything needed to open chainproof: where the data lives and who is acting."""

    db_url: str
    store: str
    origin: str
    log_key_path: Path  # private checkpoint key: a file outside the database
    log_public_path: Path  # public checkpoint key, used to verify checkpoints
    identity: str
    workspace: Path | None = None
    signing_key_path: Path | None = None  # this identity's private key (never in the database)

    @property
    def cache_dir(self) -> Path:
        base = self.workspace if self.workspace is not None else Path.home() / ".cache"
        return base / "cache" if self.workspace is not None else base / "chainproof"


def find_workspace(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / WORKSPACE_DIR
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def default_identity() -> str:
    env = os.environ.get("CHAINPROOF_IDENTITY")
    if env:
        return env
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "user"
    return re.sub(r"[^A-Za-z0-9._+-]", "-", user) or "user"


def load_settings(start: Path | None = None, *, identity: str | None = None) -> Settings:
    """Settings from the nearest workspace, overridden by environment variables."""
    workspace = find_workspace(start)
    config: dict[str, str] = {}
    if workspace is not None:
        try:
            config = json.loads((workspace / CONFIG_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkspaceError(f"cannot read {workspace / CONFIG_FILE}: {exc}",
                                 hint="restore the file or run `chainproof init` again") from None
    db = os.environ.get("CHAINPROOF_DB") or config.get("db")
    store = os.environ.get("CHAINPROOF_STORE") or config.get("store")
    if not db or not store:
        raise WorkspaceError(
            "no chainproof workspace here and CHAINPROOF_DB / CHAINPROOF_STORE are not set",
            hint="run `chainproof init` in your project folder, or set CHAINPROOF_DB and "
                 "CHAINPROOF_STORE",
        )
    base = workspace if workspace is not None else Path.cwd()
    db = db.replace("{workspace}", str(base))
    if "://" not in store:
        store = str((base / store).resolve()) if not Path(store).is_absolute() else store
    key_path = Path(os.environ.get("CHAINPROOF_LOG_KEY") or base / LOG_KEY_FILE)
    pub_path = Path(os.environ.get("CHAINPROOF_LOG_PUBKEY") or base / LOG_PUBLIC_FILE)
    who = identity or default_identity()
    signing = os.environ.get("CHAINPROOF_SIGNING_KEY")
    signing_path = Path(signing) if signing else base / "keys" / "identities" / f"{who}.pem"
    return Settings(db_url=db, store=store, origin=config.get("origin", "chainproof"),
                    log_key_path=key_path, log_public_path=pub_path,
                    identity=who, workspace=workspace, signing_key_path=signing_path)


def url_has_password(url: str) -> bool:
    """Whether a database URL carries a password (``scheme://user:secret@host/db``)."""
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return "@" in url and ":" in url.split("://", 1)[-1].split("@", 1)[0]


def redact_url(url: str) -> str:
    """A database URL with its password replaced by ``***``, for printing."""
    if not url_has_password(url):
        return url
    scheme, sep, rest = url.partition("://")
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def check_workspace_folder(folder: Path) -> bool:
    """Refuse a folder that cannot hold a workspace. Returns True when ``folder`` does not exist
    yet and will be created (only the folder itself: its parent must exist, so a typo in a
    path never silently creates a whole tree)."""
    if folder.exists():
        if not folder.is_dir():
            raise WorkspaceError(f"{folder} is not a folder",
                                 hint="give the project folder to create .chainproof/ in")
        return False
    parent = folder.resolve().parent
    if not parent.is_dir():
        raise WorkspaceError(f"cannot create {folder}: folder {parent} does not exist",
                             hint=f"check the path, or create it first (mkdir -p {parent})")
    return True


def create_workspace(folder: Path, *, db: str | None = None, store: str | None = None) -> Path:
    """Create ``folder/.chainproof`` with its config; refuses to overwrite an existing one.

    ``folder`` itself is created if missing, but not its parents. The config file is written
    0600 when the database URL holds a password (better: keep it out of the file and set
    ``CHAINPROOF_DB`` on the host)."""
    if check_workspace_folder(folder):
        folder.mkdir()
    root = folder.resolve() / WORKSPACE_DIR
    if (root / CONFIG_FILE).exists():
        raise WorkspaceError(f"{root} already holds a chainproof workspace",
                             hint="use it as it is, or remove the folder to start afresh")
    (root / "keys").mkdir(parents=True, exist_ok=True)
    os.chmod(root / "keys", 0o700)
    config = {
        "origin": f"chainproof.local/{uuid.uuid4()}",
        "db": db or "sqlite:///{workspace}/chainproof.db",
        "store": store or "objects",
    }
    mode = 0o600 if url_has_password(config["db"]) else 0o644
    tmp = root / (CONFIG_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(config, indent=2) + "\n")
    os.chmod(tmp, mode)  # whatever the umask
    os.replace(tmp, root / CONFIG_FILE)
    return root


def config_is_private(workspace_root: Path) -> bool:
    """Whether the workspace's config file is readable by its owner only."""
    try:
        return (workspace_root / CONFIG_FILE).stat().st_mode & 0o077 == 0
    except OSError:
        return False
