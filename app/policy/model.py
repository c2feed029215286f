"""The policy file (``PLOYD_POLICY_FILE``) and the admin API's policies: parsing and
validation, with errors that say where.

```yaml
defaults:                      # every tenant, unless it says otherwise
  allowed_hardware: [cpu, l4]  # hardware classes its jobs may ask for
  max_concurrent: {l4: 2}      # machines of a class running at once
  max_timeout: 4h              # the longest job timeout
  budget: {monthly_usd: 500, warn_at: 0.8}
  notify:                      # channels every pipeline notifies, besides its .ployd.yml's
    - slack: SLACK_WEBHOOK     # the secret (of each repository) holding the webhook URL
      on: [failure, budget]
tenants:
  "github:12345":              # forge:installation id (or forge:name)
    max_concurrent: {h100: 1}
```

A field a tenant leaves out comes from ``defaults``; one left out everywhere is no limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.core.config.model import NotifyChannel
from app.core.durations import format_duration, parse_duration
from app.core.results.notify import channel_json, parse_channels

FIELDS = ("allowed_hardware", "max_concurrent", "max_timeout", "budget", "notify")


class PolicyError(ValueError):
    """A policy that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Budget:
    monthly_usd: float
    warn_at: float = 0.8  # a fraction of the budget

    def as_json(self) -> dict[str, Any]:
        return {"monthly_usd": self.monthly_usd, "warn_at": self.warn_at}


@dataclass(frozen=True)
class Policy:
    """One tenant's limits; None: not set here (inherited, or no limit)."""

    allowed_hardware: frozenset[str] | None = None
    max_concurrent: Mapping[str, int] | None = None
    max_timeout_s: int | None = None
    budget: Budget | None = None
    notify: tuple[NotifyChannel, ...] | None = None  # the tenant's default channels

    def over(self, base: Policy) -> Policy:
        """This policy with what it leaves unset taken from ``base``."""
        return Policy(
            allowed_hardware=self.allowed_hardware
            if self.allowed_hardware is not None
            else base.allowed_hardware,
            max_concurrent=self.max_concurrent
            if self.max_concurrent is not None
            else base.max_concurrent,
            max_timeout_s=self.max_timeout_s
            if self.max_timeout_s is not None
            else base.max_timeout_s,
            budget=self.budget if self.budget is not None else base.budget,
            notify=self.notify if self.notify is not None else base.notify,
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.allowed_hardware is not None:
            out["allowed_hardware"] = sorted(self.allowed_hardware)
        if self.max_concurrent is not None:
            out["max_concurrent"] = dict(sorted(self.max_concurrent.items()))
        if self.max_timeout_s is not None:
            out["max_timeout"] = format_duration(self.max_timeout_s)
        if self.budget is not None:
            out["budget"] = self.budget.as_json()
        if self.notify is not None:
            out["notify"] = [_channel_out(c) for c in self.notify]
        return out


def _channel_out(c: NotifyChannel) -> dict[str, Any]:
    d = channel_json(c)
    out: dict[str, Any] = {d["kind"]: c.target.split(",") if c.kind == "email" else c.target}
    if c.secret:
        out["secret"] = c.secret
    out["on"] = d["on"]
    if c.branches is not None:
        out["branches"] = list(c.branches)
    return out


def _number(value: Any, where: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        kind = "a whole number" if integer else "a number"
        raise PolicyError(f"{where}: expected {kind}, got {value!r}")
    if value < 0:
        raise PolicyError(f"{where}: must not be negative (got {value!r})")
    if integer and value != int(value):
        raise PolicyError(f"{where}: expected a whole number, got {value!r}")
    return float(value)


def parse_policy(data: Any, where: str, classes: Iterable[str] | None = None) -> Policy:
    """A policy mapping -> Policy. ``classes``: the known hardware classes (checked)."""
    if data is None:
        return Policy()
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: expected a mapping with {', '.join(FIELDS)}")
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(FIELDS)}")
    known = set(classes) if classes is not None else None

    def check_class(name: Any, at: str) -> str:
        if not isinstance(name, str) or not name:
            raise PolicyError(f"{at}: expected a hardware class name, got {name!r}")
        if known is not None and name not in known:
            raise PolicyError(
                f"{at}: unknown hardware class {name!r}; known: {', '.join(sorted(known))}"
            )
        return name

    allowed: frozenset[str] | None = None
    if "allowed_hardware" in data:
        raw = data["allowed_hardware"]
        if not isinstance(raw, list):
            raise PolicyError(f"{where}.allowed_hardware: expected a list of hardware classes")
        allowed = frozenset(
            check_class(c, f"{where}.allowed_hardware[{i}]") for i, c in enumerate(raw)
        )
    concurrent: dict[str, int] | None = None
    if "max_concurrent" in data:
        raw = data["max_concurrent"]
        if not isinstance(raw, dict):
            raise PolicyError(f"{where}.max_concurrent: expected a mapping of class: count")
        concurrent = {
            check_class(k, f"{where}.max_concurrent"): int(
                _number(v, f"{where}.max_concurrent.{k}", integer=True)
            )
            for k, v in raw.items()
        }
    timeout: int | None = None
    if "max_timeout" in data:
        raw = data["max_timeout"]
        try:
            timeout = (
                int(_number(raw, "", integer=True))
                if isinstance(raw, (int, float)) and not isinstance(raw, bool)
                else parse_duration(str(raw))
            )
        except (ValueError, PolicyError) as e:
            raise PolicyError(f"{where}.max_timeout: {str(e).lstrip(': ')}") from None
        if timeout <= 0:
            raise PolicyError(f"{where}.max_timeout: must be more than zero")
    budget: Budget | None = None
    if "budget" in data:
        raw = data["budget"]
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = {"monthly_usd": raw}
        if not isinstance(raw, dict) or "monthly_usd" not in raw:
            raise PolicyError(f"{where}.budget: expected {{monthly_usd: N, warn_at: 0.8}}")
        extra = sorted(str(k) for k in raw if k not in ("monthly_usd", "warn_at"))
        if extra:
            raise PolicyError(
                f"{where}.budget: unknown key {extra[0]!r}; known: monthly_usd, warn_at"
            )
        warn = raw.get("warn_at", 0.8)
        if isinstance(warn, str) and warn.endswith("%"):
            try:
                warn = float(warn[:-1]) / 100
            except ValueError:
                raise PolicyError(f"{where}.budget.warn_at: expected 0.8 or 80%") from None
        warn_at = _number(warn, f"{where}.budget.warn_at")
        if not 0 < warn_at <= 1:
            raise PolicyError(f"{where}.budget.warn_at: a fraction between 0 and 1 (got {warn_at})")
        budget = Budget(_number(raw["monthly_usd"], f"{where}.budget.monthly_usd"), warn_at)
    notify: tuple[NotifyChannel, ...] | None = None
    if "notify" in data:
        try:
            notify = parse_channels(data["notify"], f"{where}.notify")
        except ValueError as e:
            raise PolicyError(str(e)) from None
    return Policy(allowed, concurrent, timeout, budget, notify)


@dataclass(frozen=True)
class PolicyFile:
    defaults: Policy = field(default_factory=Policy)
    tenants: Mapping[str, Policy] = field(default_factory=dict)  # "forge:id-or-name"

    def for_tenant(self, forge: str, external_id: str, name: str) -> tuple[Policy, str]:
        """The file's policy for a tenant (over the defaults), and which entry gave it."""
        for key in (f"{forge}:{external_id}", f"{forge}:{name}"):
            if key in self.tenants:
                return self.tenants[key].over(self.defaults), f"file:{key}"
        return self.defaults, "file:defaults"


def parse_file(data: Any, where: str, classes: Iterable[str] | None = None) -> PolicyFile:
    if data is None:
        return PolicyFile()
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: expected a mapping with 'defaults' and 'tenants'")
    unknown = sorted(str(k) for k in data if k not in ("defaults", "tenants"))
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}; known: defaults, tenants")
    known = list(classes) if classes is not None else None
    defaults = parse_policy(data.get("defaults"), f"{where}: defaults", known)
    raw = data.get("tenants") or {}
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: tenants: expected a mapping of 'forge:id' to a policy")
    tenants: dict[str, Policy] = {}
    for key, value in raw.items():
        forge, sep, ident = str(key).partition(":")
        if not sep or forge not in ("github", "gitlab", "local") or not ident:
            raise PolicyError(
                f"{where}: tenants: {key!r}: name a tenant as forge:id, e.g. 'github:12345'"
            )
        tenants[str(key)] = parse_policy(value, f"{where}: tenants.{key}", known)
    return PolicyFile(defaults, tenants)


def load_file(path: str | Path, classes: Iterable[str] | None = None) -> PolicyFile:
    """Read and validate the policy file; PolicyError (with the file name) when bad."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise PolicyError(f"{p}: cannot read the policy file: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise PolicyError(f"{p}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    return parse_file(data, str(p), classes)
