"""Agent pools, pure: what an operator types when making a registration token (a pool
name, the tenants it serves, labels, an expiry), checked with messages that say what
would work; which tenants a pool serves; and a registered agent's hardware in one word
(``h100:8``, ``cpu:16``).

A pool must name the tenants its agents serve, as ``forge:id`` or ``forge:name`` (the
policy file's spelling: ``github:12345``, ``github:acme``, ``gitlab:ml-team``,
``local:local``), or ``*`` for every tenant, explicitly: a token that says nothing is
refused rather than taken to mean "all".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.agentfit import describe_machine
from app.core.durations import DURATION_HELP, parse_duration

ALL_TENANTS = "*"
FORGES = ("github", "gitlab", "local")
STATES = ("active", "draining", "disabled")
DEFAULT_EXPIRES = "7d"
MAX_EXPIRES_S = 365 * 86400
MAX_TENANTS = 100
MAX_LABELS = 64  # as app.protocol.MAX_LABELS

_AGENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_POOL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,47}$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9._/:+-]{0,63}$")
_TENANT_ID = re.compile(r"^[^\s:*][^\s]{0,254}$")


class PoolError(ValueError):
    """Input that does not make a pool or a token; the text says what would."""


def check_pool(name: str) -> str:
    """A pool name: lower-case letters, digits, ``.``, ``_``, ``-``; at most 48."""
    if not isinstance(name, str) or not _POOL.match(name):
        raise PoolError(
            f"pool {name!r}: use lower-case letters, digits, '.', '_' and '-' "
            "(at most 48, starting with a letter or digit), e.g. lab-gpus"
        )
    return name


def check_agent_name(name: str) -> str:
    """A registered agent's name (``--agent-id``): letters, digits, ``.``, ``_``, ``-``."""
    if not isinstance(name, str) or not _AGENT.match(name):
        raise PoolError(
            f"agent name {name!r}: use letters, digits, '.', '_' and '-' (at most 128, "
            "starting with a letter or digit); start the agent with --agent-id NAME"
        )
    return name


def parse_tenants(values: Iterable[str]) -> tuple[str, ...]:
    """The tenants a pool serves: ``("*",)`` or distinct ``forge:id-or-name``s."""
    given = [v.strip() if isinstance(v, str) else v for v in values]
    if not given:
        raise PoolError(
            "say which tenants this pool serves: --tenant github:ORG (repeat it for "
            "several), or --tenant '*' for every tenant"
        )
    if ALL_TENANTS in given:
        if len(given) > 1:
            raise PoolError("'*' already means every tenant: give it alone, or name tenants")
        return (ALL_TENANTS,)
    if len(given) > MAX_TENANTS:
        raise PoolError(f"at most {MAX_TENANTS} tenants per pool; use '*' for every tenant")
    out: list[str] = []
    for v in given:
        if not isinstance(v, str):
            raise PoolError("tenants must be strings like github:acme")
        forge, colon, ident = v.partition(":")
        if not colon or forge not in FORGES or not _TENANT_ID.match(ident):
            raise PoolError(
                f"tenant {v!r}: name a tenant as forge:id or forge:name "
                f"(forge one of {', '.join(FORGES)}), e.g. github:acme or github:12345; "
                "or '*' for every tenant"
            )
        if v not in out:
            out.append(v)
    return tuple(out)


def parse_labels(text: str | Mapping[str, Any] | None) -> dict[str, str]:
    """``k=v,k2=v2`` (or an object of strings, from the API) as a dict."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        pairs = list(text.items())
    elif isinstance(text, str):
        pairs = []
        for item in text.split(","):
            if not item.strip():
                if text.strip():
                    raise PoolError(f"labels {text!r}: an empty label; write k=v,k2=v2")
                continue
            key, eq, value = item.partition("=")
            if not eq:
                raise PoolError(f"label {item.strip()!r}: write it as key=value (k=v,k2=v2)")
            pairs.append((key.strip(), value.strip()))
    else:
        raise PoolError("labels must be k=v,k2=v2 or an object of strings")
    out: dict[str, str] = {}
    for key, value in pairs:
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise PoolError(
                f"label key {key!r}: letters, digits, '.', '_', '/' and '-', "
                "at most 63, starting with a letter or digit"
            )
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise PoolError(
                f"label {key}={value!r}: a value is letters, digits and '._/:+-', at most 63"
            )
        if key in out:
            raise PoolError(f"label {key!r} is given twice")
        out[key] = value
    if len(out) > MAX_LABELS:
        raise PoolError(f"at most {MAX_LABELS} labels")
    return out


def parse_expires(text: str | None) -> int:
    """Seconds a token stays usable: a duration up to 365 days (default 7 days)."""
    if text is None:
        text = DEFAULT_EXPIRES
    if not isinstance(text, str):
        raise PoolError(f"expires must be {DURATION_HELP}")
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise PoolError(f"expires {text!r} is not {DURATION_HELP}") from None
    if seconds <= 0 or seconds > MAX_EXPIRES_S:
        raise PoolError(f"expires {text!r}: from 1s to 365d")
    return seconds


def serves(tenants: Sequence[str], forge: str, external_id: str, name: str) -> bool:
    """Whether a pool serving ``tenants`` may run a job of this tenant."""
    if ALL_TENANTS in tenants:
        return True
    return f"{forge}:{external_id}" in tenants or f"{forge}:{name}" in tenants


@dataclass(frozen=True)
class _Gpu:
    name: str
    model: str
    memory_mb: int


@dataclass(frozen=True)
class _Machine:
    cpus: int
    memory_mb: int
    disk_gb: int
    gpus: tuple[_Gpu, ...]
    containers: str = ""


def hardware_summary(hardware: Mapping[str, Any] | None) -> str:
    """A stored ``Hardware`` (its JSON) as ``app.core.agentfit`` says it: ``h100:8``,
    ``a100:4+l4:1``, ``cpu:16``, ``gpu:1 (NVIDIA RTX A6000)`` (no catalog class), with
    the container runtime it reported after it (``cpu:16 podman``); ``-`` when not
    reported."""
    if not hardware:
        return "-"
    gpus = hardware.get("gpus") or []
    machine = _Machine(
        cpus=_count(hardware.get("cpus")),
        memory_mb=_count(hardware.get("memory_mb")),
        disk_gb=_count(hardware.get("disk_gb")),
        gpus=tuple(
            _Gpu(str(g.get("name") or ""), str(g.get("model") or ""), _count(g.get("memory_mb")))
            for g in (gpus if isinstance(gpus, list) else [])
            if isinstance(g, Mapping)
        ),
    )
    if not machine.gpus and machine.cpus <= 0:
        return "-"
    runtime = hardware.get("containers")
    tail = f" {runtime}" if isinstance(runtime, str) and runtime else ""
    return describe_machine(machine) + tail


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def labels_text(labels: Mapping[str, str]) -> str:
    """``k=v,k2=v2`` (sorted), ``-`` for none."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"
