"""Settings: read once from ``PLOYD_*`` environment variables into a typed object.

Nothing reads the environment at import time; ``Settings.from_env()`` is called once at
start-up and the object is passed to whatever needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(ValueError):
    """A PLOYD_* variable has a value that cannot be used."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


@dataclass(frozen=True)
class Settings:
    """Every setting PloyD reads, with defaults that work on a laptop."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".ployd-data")
    database_url: str = ""  # default: sqlite:///<data_dir>/ployd.db
    public_url: str = ""  # default: http://<host>:<port>
    executor: str = "local"
    local_agents: int = 2
    admin_token: str = ""
    secret_key: str = ""
    catalog_file: str = ""
    heartbeat_timeout_s: int = 60
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("PLOYD_DATA_DIR") or ".ployd-data").expanduser()
        host = env.get("PLOYD_HOST") or "127.0.0.1"
        port = _int(env, "PLOYD_PORT", 8080)
        executor = env.get("PLOYD_EXECUTOR") or "local"
        if executor not in ("local",):
            raise SettingsError(f"PLOYD_EXECUTOR={executor!r}: known executors: local")
        s = cls(
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=env.get("PLOYD_DATABASE_URL") or "",
            public_url=(env.get("PLOYD_PUBLIC_URL") or "").rstrip("/"),
            executor=executor,
            local_agents=_int(env, "PLOYD_LOCAL_AGENTS", 2, minimum=0),
            admin_token=env.get("PLOYD_ADMIN_TOKEN") or "",
            secret_key=env.get("PLOYD_SECRET_KEY") or "",
            catalog_file=env.get("PLOYD_CATALOG_FILE") or "",
            heartbeat_timeout_s=_int(env, "PLOYD_HEARTBEAT_TIMEOUT", 60, minimum=5),
        )
        return s

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ployd.db').resolve()}"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    def check_exposure(self) -> None:
        """Refuse to serve beyond loopback without an admin token: the API starts jobs."""
        if self.host not in ("127.0.0.1", "localhost", "::1") and not self.admin_token:
            raise SettingsError(
                f"PLOYD_HOST={self.host} listens beyond this machine: set PLOYD_ADMIN_TOKEN "
                "so that only you can use the API"
            )
