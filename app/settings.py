"""Settings: read once from ``PLOYD_*`` environment variables into a typed object.

Nothing reads the environment at import time; ``Settings.from_env()`` is called once at
start-up and the object is passed to whatever needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.adapters.ec2.config import EC2Config
    from app.adapters.github.config import GitHubAppConfig
    from app.adapters.gitlab.config import GitLabConfig
    from app.core.ec2_policy import EC2Policy


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


def _size(env: Mapping[str, str], name: str, default: int) -> int:
    """Bytes in a size like ``5GB`` or ``512MB`` (1 GB = 1024 MB)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    from app.core.durations import parse_size_gb

    try:
        return int(parse_size_gb(raw) * (1 << 30))
    except ValueError as e:
        raise SettingsError(f"{name}: {e}") from None


def _duration(env: Mapping[str, str], name: str, default: int) -> int:
    """Seconds in a duration like ``7d`` or ``12h``."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    from app.core.durations import parse_duration

    try:
        return parse_duration(raw)
    except ValueError as e:
        raise SettingsError(f"{name}: {e}") from None


def _deployment(env: Mapping[str, str]) -> str:
    """PLOYD_DEPLOYMENT: an EC2 tag value (what the reaper and the IAM policy match)."""
    raw = env.get("PLOYD_DEPLOYMENT") or ""
    if raw and (len(raw) > 64 or not all(c.isalnum() or c in "-_.:" for c in raw)):
        raise SettingsError(
            f"PLOYD_DEPLOYMENT={raw!r}: 1 to 64 letters, digits and - _ . : (an EC2 tag value)"
        )
    return raw


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
    # The local agents' workspaces: outside the data directory (steps never see it).
    work_dir: Path | None = None  # PLOYD_WORK_DIR; default: <data dir>-work beside it
    step_isolation: str = "auto"  # PLOYD_STEP_ISOLATION: auto | sandbox | none
    pass_env: str = ""  # PLOYD_PASS_ENV: machine variables local agents' steps also get
    container_runtime: str = ""  # PLOYD_CONTAINER_RUNTIME: podman | docker | none; "" finds
    admin_token: str = ""
    secret_key: str = ""
    catalog_file: str = ""
    heartbeat_timeout_s: int = 60
    # PLOYD_MAX_JOBS_PER_PIPELINE: jobs after matrix expansion; a bigger file is invalid
    max_jobs_per_pipeline: int = 1000
    # Several replicas on one PostgreSQL (README "Run several replicas"): a delivery's
    # lease (PLOYD_INBOX_LEASE), the handler runs before it is dead-lettered
    # (PLOYD_INBOX_ATTEMPTS, backoff from PLOYD_INBOX_RETRY), and the id that tags this
    # deployment's EC2 instances (PLOYD_DEPLOYMENT; default: made once per database).
    inbox_lease_s: int = 30
    inbox_attempts: int = 5
    inbox_retry_s: int = 2
    deployment: str = ""
    github: GitHubAppConfig | None = None
    github_git_url: str = "https://github.com"
    gitlab: GitLabConfig | None = None
    gitlab_git_url: str = ""  # default: each project's own http URL
    gitlab_clone_token: str = field(default="", repr=False)
    max_webhook_bytes: int = 25 << 20  # PLOYD_WEBHOOK_MAX_BYTES: GitHub's 25 MB by default
    # PLOYD_EVENT_LOOP: auto (uvloop where it is installed, else asyncio's) | uvloop | asyncio
    event_loop: str = "auto"
    # Logs in S3 (PLOYD_S3_BUCKET) instead of PLOYD_DATA_DIR/logs; the AWS endpoint is
    # shared with EC2 (PLOYD_AWS_REGION, PLOYD_AWS_ENDPOINT_URL).
    s3_bucket: str = ""
    s3_prefix: str = ""
    aws_region: str = ""
    aws_endpoint_url: str = ""
    cache_max_bytes: int = 5 << 30  # PLOYD_CACHE_MAX_SIZE: one cache archive at most
    cache_unused_ttl_s: int = 7 * 24 * 3600  # PLOYD_CACHE_TTL: drop entries unused this long
    artifact_expire_s: int = 30 * 24 * 3600  # PLOYD_ARTIFACT_EXPIRE_IN: without expire_in
    kms_key_id: str = ""  # PLOYD_KMS_KEY_ID: seal secrets with KMS data keys (envelope)
    policy_file: str = ""  # PLOYD_POLICY_FILE: tenants' quotas and budgets (app.policy)
    log_level: str = "INFO"  # PLOYD_LOG_LEVEL
    log_format: str = "text"  # PLOYD_LOG_FORMAT: text or json (one object a line)
    # PLOYD_EXECUTOR=ec2: the AWS side (PLOYD_AWS_*, PLOYD_EC2_*) and the executor's own
    # (pools, timeouts, PLOYD_AGENT_URL), read with the rest.
    ec2: EC2Config | None = None
    ec2_policy: EC2Policy | None = None
    # Email notifications (``notify: - email:``): PLOYD_SMTP_HOST (empty: email is off),
    # PLOYD_SMTP_PORT, PLOYD_SMTP_FROM, PLOYD_SMTP_USER / PLOYD_SMTP_PASSWORD (login
    # after STARTTLS, which PLOYD_SMTP_STARTTLS=1 asks for).
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "ployd@localhost"
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = False
    # PLOYD_NOTIFY_ALLOW_NETS: networks (CIDR) beyond the public internet that webhook and
    # Slack notifications may reach (``app.core.netguard``); empty: none, loopback included.
    notify_allow_nets: tuple[str, ...] = ()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, overrides: Mapping[str, str] = {}
    ) -> Settings:
        """From ``environ`` (default: the process environment), with ``overrides`` (the
        command line's flags) on top."""
        env = {**(os.environ if environ is None else environ), **overrides}
        data_dir = Path(env.get("PLOYD_DATA_DIR") or ".ployd-data").expanduser()
        host = env.get("PLOYD_HOST") or "127.0.0.1"
        port = _int(env, "PLOYD_PORT", 8080)
        executor = env.get("PLOYD_EXECUTOR") or "local"
        if executor not in ("local", "ec2"):
            raise SettingsError(f"PLOYD_EXECUTOR={executor!r}: known executors: local, ec2")
        s = cls(
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=env.get("PLOYD_DATABASE_URL") or "",
            public_url=(env.get("PLOYD_PUBLIC_URL") or "").rstrip("/"),
            executor=executor,
            local_agents=_int(env, "PLOYD_LOCAL_AGENTS", 2, minimum=0),
            work_dir=_path(env, "PLOYD_WORK_DIR"),
            step_isolation=_choice(env, "PLOYD_STEP_ISOLATION", ("auto", "sandbox", "none")),
            pass_env=env.get("PLOYD_PASS_ENV") or "",
            container_runtime=_choice(
                env, "PLOYD_CONTAINER_RUNTIME", ("", "podman", "docker", "none")
            ),
            admin_token=env.get("PLOYD_ADMIN_TOKEN") or "",
            secret_key=env.get("PLOYD_SECRET_KEY") or "",
            catalog_file=env.get("PLOYD_CATALOG_FILE") or "",
            heartbeat_timeout_s=_int(env, "PLOYD_HEARTBEAT_TIMEOUT", 60, minimum=5),
            max_jobs_per_pipeline=max_jobs_per_pipeline(env),
            inbox_lease_s=max(1, _duration(env, "PLOYD_INBOX_LEASE", 30)),
            inbox_attempts=_int(env, "PLOYD_INBOX_ATTEMPTS", 5, minimum=1),
            inbox_retry_s=_duration(env, "PLOYD_INBOX_RETRY", 2),
            deployment=_deployment(env),
            github=_github(env),
            github_git_url=(env.get("PLOYD_GITHUB_GIT_URL") or "https://github.com").rstrip("/"),
            gitlab=_gitlab(env),
            gitlab_git_url=(env.get("PLOYD_GITLAB_GIT_URL") or "").rstrip("/"),
            gitlab_clone_token=env.get("PLOYD_GITLAB_CLONE_TOKEN") or "",
            max_webhook_bytes=_int(env, "PLOYD_WEBHOOK_MAX_BYTES", 25 << 20, minimum=1024),
            event_loop=_event_loop(env),
            s3_bucket=env.get("PLOYD_S3_BUCKET") or "",
            s3_prefix=env.get("PLOYD_S3_PREFIX") or "",
            aws_region=env.get("PLOYD_AWS_REGION") or "",
            aws_endpoint_url=env.get("PLOYD_AWS_ENDPOINT_URL") or "",
            cache_max_bytes=_size(env, "PLOYD_CACHE_MAX_SIZE", 5 << 30),
            cache_unused_ttl_s=_duration(env, "PLOYD_CACHE_TTL", 7 * 24 * 3600),
            artifact_expire_s=_duration(env, "PLOYD_ARTIFACT_EXPIRE_IN", 30 * 24 * 3600),
            kms_key_id=env.get("PLOYD_KMS_KEY_ID") or "",
            policy_file=env.get("PLOYD_POLICY_FILE") or "",
            log_level=env.get("PLOYD_LOG_LEVEL") or "INFO",
            log_format=_choice(env, "PLOYD_LOG_FORMAT", ("text", "json")),
            **_ec2(env, executor),
            smtp_host=env.get("PLOYD_SMTP_HOST") or "",
            smtp_port=_int(env, "PLOYD_SMTP_PORT", 25, minimum=1),
            smtp_from=env.get("PLOYD_SMTP_FROM") or "ployd@localhost",
            smtp_user=env.get("PLOYD_SMTP_USER") or "",
            smtp_password=env.get("PLOYD_SMTP_PASSWORD") or "",
            smtp_starttls=(env.get("PLOYD_SMTP_STARTTLS") or "").lower() in ("1", "true", "yes"),
            notify_allow_nets=_networks(env, "PLOYD_NOTIFY_ALLOW_NETS"),
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
        """Where the local agents' workspaces live: never inside the data directory."""
        if self.work_dir is not None:
            return self.work_dir
        return self.data_dir.with_name(self.data_dir.name + "-work")

    def secret_key_bytes(self) -> bytes:
        """PLOYD_SECRET_KEY, or a random key kept in the data directory (created once)."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret_key"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            import secrets

            self.data_dir.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(48).encode()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
            return key

    def instance_id(self) -> str:
        """This server among replicas sharing a database, the same across its restarts:
        a random id kept in the data directory (created once). Replicas need data
        directories of their own."""
        path = self.data_dir / "instance_id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            import secrets

            self.data_dir.mkdir(parents=True, exist_ok=True)
            ident = secrets.token_hex(6)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process of this data directory won
                return path.read_text().strip()
            with os.fdopen(fd, "w") as f:
                f.write(ident)
            return ident

    def check_exposure(self) -> None:
        """Refuse to serve beyond loopback without an admin token: the API starts jobs."""
        if self.host not in ("127.0.0.1", "localhost", "::1") and not self.admin_token:
            raise SettingsError(
                f"PLOYD_HOST={self.host} listens beyond this machine: set PLOYD_ADMIN_TOKEN "
                "so that only you can use the API"
            )


def _path(env: Mapping[str, str], name: str) -> Path | None:
    return Path(env[name]).expanduser() if env.get(name) else None


def _event_loop(env: Mapping[str, str]) -> str:
    value = _choice(env, "PLOYD_EVENT_LOOP", ("auto", "uvloop", "asyncio"))
    if value == "uvloop":
        import importlib.util

        if importlib.util.find_spec("uvloop") is None:
            raise SettingsError(
                "PLOYD_EVENT_LOOP=uvloop: uvloop is not installed here "
                "(pip install uvloop, or set auto or asyncio)"
            )
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or choices[0]
    if value not in choices:
        raise SettingsError(f"{name}={value!r}: one of {', '.join(c for c in choices if c)}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated CIDR networks, checked (SettingsError naming the bad one)."""
    from app.core.netguard import parse_allow_nets

    try:
        return tuple(str(n) for n in parse_allow_nets(env.get(name) or ""))
    except ValueError as e:
        raise SettingsError(f"{name}={env.get(name)!r}: {e}") from None


def env_setting(name: str) -> str:
    """One PLOYD_* variable for a command that needs only it (``ployd validate`` reads
    PLOYD_CATALOG_FILE without caring whether the server's settings are complete)."""
    return os.environ.get(name, "")


def max_jobs_per_pipeline(env: Mapping[str, str] | None = None) -> int:
    """PLOYD_MAX_JOBS_PER_PIPELINE (default 1,000), for the server and for the commands
    that check a file without one (``ployd validate``, ``ployd run``); SettingsError
    when it is not a whole number of at least 1."""
    return _int(os.environ if env is None else env, "PLOYD_MAX_JOBS_PER_PIPELINE", 1000, 1)


def _ec2(env: Mapping[str, str], executor: str) -> dict[str, Any]:
    """The EC2 executor's settings when PLOYD_EXECUTOR=ec2."""
    if executor != "ec2":
        return {}
    from app.adapters.ec2.config import EC2Config, EC2ConfigError
    from app.core.ec2_policy import EC2Policy, PolicyError

    try:
        return {"ec2_policy": EC2Policy.from_env(env), "ec2": EC2Config.from_env(env)}
    except (EC2ConfigError, PolicyError) as e:
        raise SettingsError(str(e)) from None


def _github(env: Mapping[str, str]) -> GitHubAppConfig | None:
    """The GitHub App's settings when PLOYD_GITHUB_APP_ID is set."""
    if not env.get("PLOYD_GITHUB_APP_ID"):
        return None
    from app.adapters.github.config import GitHubAppConfig, GitHubConfigError

    try:
        config = GitHubAppConfig.from_env(env)
    except GitHubConfigError as e:
        raise SettingsError(str(e)) from None
    if not config.webhook_secret:
        raise SettingsError("PLOYD_GITHUB_WEBHOOK_SECRET must be set with PLOYD_GITHUB_APP_ID")
    return config


def _gitlab(env: Mapping[str, str]) -> GitLabConfig | None:
    """GitLab's settings when PLOYD_GITLAB_TOKEN is set."""
    if not env.get("PLOYD_GITLAB_TOKEN"):
        return None
    from app.adapters.gitlab.config import GitLabConfig
    from app.adapters.gitlab.errors import GitLabConfigError

    try:
        config = GitLabConfig.from_env(env)
    except GitLabConfigError as e:
        raise SettingsError(str(e)) from None
    if not config.webhook_secret:
        raise SettingsError("PLOYD_GITLAB_WEBHOOK_SECRET must be set with PLOYD_GITLAB_TOKEN")
    return config
