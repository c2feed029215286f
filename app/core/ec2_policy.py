"""The EC2 executor's own settings (the AWS ones are ``app.adapters.ec2.config``):
warm pools per hardware spec, boot timeout, maximum machine lifetime, where agents reach
the server, and which hardware classes this PloyD may start."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.core.durations import parse_duration


class PolicyError(ValueError):
    """A PLOYD_EC2_* policy variable is unusable."""


@dataclass(frozen=True)
class PoolPolicy:
    """Warm machines for one hardware spec (``l4:1``): at least ``min_idle`` waiting, at
    most ``max_idle``, each kept ``idle_ttl_s`` after its last job."""

    min_idle: int = 0
    max_idle: int = 2
    idle_ttl_s: int = 600


@dataclass(frozen=True)
class EC2Policy:
    pools: Mapping[str, PoolPolicy] = field(default_factory=dict)  # spec -> policy
    default_pool: PoolPolicy = PoolPolicy()
    boot_timeout_s: int = 600
    # per hardware class (``h100``) or instance family (``p5``): slow boots get longer
    boot_timeouts: Mapping[str, int] = field(default_factory=dict)
    max_lifetime_s: int = 80 * 3600  # past the longest job timeout (72 h)
    reap_every_s: int = 60
    allowed_classes: frozenset[str] | None = None
    agent_url: str = ""  # where agents on EC2 reach PloyD; default PLOYD_PUBLIC_URL

    def pool(self, spec: str) -> PoolPolicy:
        return self.pools.get(spec, self.default_pool)

    def boot_timeout_for(self, family: str, hardware_class: str) -> int:
        """Seconds a machine of instance ``family`` (``p5``) and ``hardware_class``
        (``h100``) has to register: the family's, else the class's, else the default."""
        for key in (family, hardware_class):
            if key and key in self.boot_timeouts:
                return self.boot_timeouts[key]
        return self.boot_timeout_s

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EC2Policy:
        pools: dict[str, PoolPolicy] = {}
        default = PoolPolicy()
        raw = env.get("PLOYD_EC2_POOLS", "").strip()
        if raw:
            try:
                data = json.loads(raw)
            except ValueError as e:
                raise PolicyError(f"PLOYD_EC2_POOLS: not JSON: {e}") from None
            if not isinstance(data, dict):
                raise PolicyError('PLOYD_EC2_POOLS: expected {"l4:1": {"min_idle": 1}, ...}')
            for spec, p in data.items():
                pool = _pool(spec, p)
                if spec == "default":
                    default = pool
                else:
                    pools[spec] = pool
        allowed = env.get("PLOYD_EC2_ALLOWED_CLASSES", "").strip()

        def seconds(name: str, default_s: int) -> int:
            text = env.get(name, "").strip()
            try:
                return parse_duration(text) if text else default_s
            except ValueError as e:
                raise PolicyError(f"{name}={text!r}: {e}") from None

        boot_timeouts: dict[str, int] = {}
        raw = env.get("PLOYD_EC2_BOOT_TIMEOUTS", "").strip()
        if raw:
            try:
                data = json.loads(raw)
            except ValueError as e:
                raise PolicyError(f"PLOYD_EC2_BOOT_TIMEOUTS: not JSON: {e}") from None
            if not isinstance(data, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) for k, v in data.items()
            ):
                raise PolicyError(
                    'PLOYD_EC2_BOOT_TIMEOUTS: expected {"p5": "25m", "a100": "15m"} '
                    "(instance family or hardware class -> duration)"
                )
            for key, text in data.items():
                try:
                    boot_timeouts[key] = parse_duration(text)
                except ValueError as e:
                    raise PolicyError(f"PLOYD_EC2_BOOT_TIMEOUTS[{key!r}]={text!r}: {e}") from None
                if boot_timeouts[key] < 60:
                    raise PolicyError(
                        f"PLOYD_EC2_BOOT_TIMEOUTS[{key!r}]={text!r}: at least 1m (a machine "
                        "needs that to boot)"
                    )
        return cls(
            pools=pools,
            default_pool=default,
            boot_timeout_s=seconds("PLOYD_EC2_BOOT_TIMEOUT", 600),
            boot_timeouts=boot_timeouts,
            max_lifetime_s=seconds("PLOYD_EC2_MAX_LIFETIME", 80 * 3600),
            allowed_classes=frozenset(c.strip() for c in allowed.split(",") if c.strip())
            if allowed
            else None,
            agent_url=(env.get("PLOYD_AGENT_URL") or "").rstrip("/"),
        )


def _pool(spec: str, p: object) -> PoolPolicy:
    if not isinstance(p, dict) or not set(p) <= {"min_idle", "max_idle", "idle_ttl"}:
        raise PolicyError(
            f"PLOYD_EC2_POOLS[{spec!r}]: expected {{min_idle, max_idle, idle_ttl}}, got {p!r}"
        )
    try:
        min_idle, max_idle = int(p.get("min_idle", 0)), int(p.get("max_idle", 2))
        ttl = parse_duration(str(p.get("idle_ttl", "10m")))
    except (TypeError, ValueError) as e:
        raise PolicyError(f"PLOYD_EC2_POOLS[{spec!r}]: {e}") from None
    if not 0 <= min_idle <= max_idle:
        raise PolicyError(f"PLOYD_EC2_POOLS[{spec!r}]: need 0 <= min_idle <= max_idle")
    return PoolPolicy(min_idle, max_idle, ttl)
