"""The EC2 executor's settings, read once from ``PLOYD_AWS_*``/``PLOYD_EC2_*`` (never at
import time).

Credentials are not settings: boto3 finds them (instance role, SSO, env, profile).

* ``PLOYD_AWS_REGION`` (required) and ``PLOYD_AWS_ENDPOINT_URL`` (moto, LocalStack, a VPC
  endpoint).
* ``PLOYD_EC2_SUBNETS``: comma-separated subnet ids; their AZs are looked up from EC2.
* ``PLOYD_EC2_SECURITY_GROUP``: a security group id (``sg-...``).
* ``PLOYD_EC2_INSTANCE_PROFILE``: an instance profile name or ARN.
* ``PLOYD_EC2_AMIS`` (JSON: hardware class -> AMI id ``ami-...`` or
  ``resolve:ssm:PARAMETER``, e.g. a Deep Learning AMI's public parameter, with a
  ``default`` key) or ``PLOYD_EC2_LAUNCH_TEMPLATES`` (JSON: class -> launch template id
  ``lt-...`` or name).
* ``PLOYD_EC2_DEFAULT_GPU_READY`` (``true``/``false``, default false): whether the
  ``default`` AMI/template has NVIDIA drivers. While false, a GPU class this PloyD may
  start (``PLOYD_EC2_ALLOWED_CLASSES``, else every GPU class of the catalog) needs its
  own entry: ``missing_gpu_images`` names the ones without, and the executor refuses to
  start.
* ``PLOYD_EC2_KEY_NAME`` (optional), ``PLOYD_EC2_ROOT_GB`` (default 100: the root volume
  when neither a launch template nor the job says otherwise).
* ``PLOYD_EC2_KMS_KEY`` (optional): the KMS key (id, alias or ARN) the root volumes PloyD
  sizes are encrypted with; unset: the account's default EBS key. Volumes are always
  encrypted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

DEFAULT_ROOT_GB = 100
MAX_ROOT_GB = 16384  # gp3's ceiling

_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SG = re.compile(r"^sg-[0-9a-f]{8,17}$")
_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")
# An SSM parameter holding an AMI id, as EC2 takes it in ImageId: a name (``/aws/service/
# deeplearning/...``) and an optional ``:VERSION`` or ``:LABEL``.
SSM_PREFIX = "resolve:ssm:"
_SSM_IMAGE = re.compile(r"^resolve:ssm:[A-Za-z0-9_.\-/]{1,1011}(:[A-Za-z0-9_.\-]{1,100})?$")
_KMS = re.compile(
    r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_+=,.@-]{1,256}"
    r"|alias/[A-Za-z0-9/_-]{1,250}|(mrk-)?[0-9a-f]{32}|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12})$"
)
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")
_LT_ID = re.compile(r"^lt-[0-9a-f]{8,17}$")
_LT_NAME = re.compile(r"^[a-zA-Z0-9().\-/_]{3,128}$")
_PROFILE_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")


class EC2ConfigError(ValueError):
    """A PLOYD_AWS_* / PLOYD_EC2_* variable is missing or unusable."""


@dataclass(frozen=True)
class ImageChoice:
    """What to boot a hardware class from: an AMI, or a launch template (id or name)."""

    kind: Literal["ami", "launch_template"]
    value: str


def _json_map(env: Mapping[str, str], name: str) -> dict[str, str]:
    raw = env.get(name, "").strip()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EC2ConfigError(f"{name}: not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise EC2ConfigError(
            f'{name}: expected a JSON object of strings, e.g. {{"default": "..."}}'
        )
    if "default" not in data:
        raise EC2ConfigError(f'{name}: needs a "default" key (got {sorted(data)})')
    return data


@dataclass(frozen=True)
class EC2Config:
    region: str
    subnets: tuple[str, ...]
    security_group: str
    instance_profile: str
    amis: Mapping[str, str] = field(default_factory=dict)
    launch_templates: Mapping[str, str] = field(default_factory=dict)
    endpoint_url: str | None = None
    key_name: str | None = None
    root_gb: int = DEFAULT_ROOT_GB
    default_gpu_ready: bool = False
    kms_key_id: str | None = None

    def __post_init__(self) -> None:
        # frozen all the way down: the maps cannot be changed behind the config's back
        object.__setattr__(self, "amis", MappingProxyType(dict(self.amis)))
        object.__setattr__(self, "launch_templates", MappingProxyType(dict(self.launch_templates)))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EC2Config:
        region = env.get("PLOYD_AWS_REGION", "").strip()
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
            raise EC2ConfigError(
                f"PLOYD_AWS_REGION={region!r}: expected a region such as 'us-east-1'"
            )
        endpoint = env.get("PLOYD_AWS_ENDPOINT_URL", "").strip() or None
        if endpoint is not None and not endpoint.startswith(("https://", "http://")):
            raise EC2ConfigError(f"PLOYD_AWS_ENDPOINT_URL={endpoint!r}: expected a URL")

        subnets = tuple(s.strip() for s in env.get("PLOYD_EC2_SUBNETS", "").split(",") if s.strip())
        if not subnets:
            raise EC2ConfigError("PLOYD_EC2_SUBNETS: set at least one subnet id (comma-separated)")
        bad = [s for s in subnets if not _SUBNET.match(s)]
        if bad:
            raise EC2ConfigError(f"PLOYD_EC2_SUBNETS: not subnet ids: {', '.join(bad)}")
        if len(set(subnets)) != len(subnets):
            raise EC2ConfigError("PLOYD_EC2_SUBNETS: a subnet is listed twice")

        sg = env.get("PLOYD_EC2_SECURITY_GROUP", "").strip()
        if not _SG.match(sg):
            raise EC2ConfigError(
                f"PLOYD_EC2_SECURITY_GROUP={sg!r}: expected a security group id (sg-...)"
            )
        profile = env.get("PLOYD_EC2_INSTANCE_PROFILE", "").strip()
        if not (profile.startswith("arn:") and ":instance-profile/" in profile) and not (
            _PROFILE_NAME.match(profile)
        ):
            raise EC2ConfigError(
                f"PLOYD_EC2_INSTANCE_PROFILE={profile!r}: expected an instance profile "
                "name or arn:aws:iam::ACCOUNT:instance-profile/NAME"
            )

        amis = _json_map(env, "PLOYD_EC2_AMIS")
        templates = _json_map(env, "PLOYD_EC2_LAUNCH_TEMPLATES")
        if amis and templates:
            raise EC2ConfigError("set PLOYD_EC2_AMIS or PLOYD_EC2_LAUNCH_TEMPLATES, not both")
        if not amis and not templates:
            raise EC2ConfigError(
                'set PLOYD_EC2_AMIS (e.g. {"default": "ami-0123456789abcdef0"}) '
                "or PLOYD_EC2_LAUNCH_TEMPLATES"
            )
        bad = [f"{k}={v}" for k, v in amis.items() if not (_AMI.match(v) or _SSM_IMAGE.match(v))]
        if bad:
            raise EC2ConfigError(
                f"PLOYD_EC2_AMIS: not AMI ids: {', '.join(bad)} "
                "(expected ami-... or resolve:ssm:NAME)"
            )
        bad = [
            f"{k}={v}" for k, v in templates.items() if not (_LT_ID.match(v) or _LT_NAME.match(v))
        ]
        if bad:
            raise EC2ConfigError(
                f"PLOYD_EC2_LAUNCH_TEMPLATES: not launch template ids or names: {', '.join(bad)}"
            )

        raw_gb = env.get("PLOYD_EC2_ROOT_GB", "").strip() or str(DEFAULT_ROOT_GB)
        if not raw_gb.isdigit() or not 8 <= int(raw_gb) <= MAX_ROOT_GB:
            raise EC2ConfigError(
                f"PLOYD_EC2_ROOT_GB={raw_gb!r}: expected whole GiB between 8 and {MAX_ROOT_GB}"
            )
        ready = env.get("PLOYD_EC2_DEFAULT_GPU_READY", "").strip().lower()
        if ready not in _TRUE + _FALSE:
            raise EC2ConfigError(f"PLOYD_EC2_DEFAULT_GPU_READY={ready!r}: expected true or false")
        kms = env.get("PLOYD_EC2_KMS_KEY", "").strip() or None
        if kms is not None and not _KMS.match(kms):
            raise EC2ConfigError(
                f"PLOYD_EC2_KMS_KEY={kms!r}: expected a KMS key id, alias/NAME or key/alias ARN"
            )
        return cls(
            region=region,
            subnets=subnets,
            security_group=sg,
            instance_profile=profile,
            amis=amis,
            launch_templates=templates,
            endpoint_url=endpoint,
            key_name=env.get("PLOYD_EC2_KEY_NAME", "").strip() or None,
            root_gb=int(raw_gb),
            default_gpu_ready=ready in _TRUE,
            kms_key_id=kms,
        )

    def has_own_image(self, hardware_class: str) -> bool:
        """Whether ``hardware_class`` has an entry of its own (not ``default``)."""
        return hardware_class != "default" and hardware_class in (
            self.amis or self.launch_templates
        )

    def missing_gpu_images(self, gpu_classes: Iterable[str]) -> list[str]:
        """The GPU classes of ``gpu_classes`` that would boot the ``default`` image when
        the operator has not said it is GPU-ready (``PLOYD_EC2_DEFAULT_GPU_READY``)."""
        if self.default_gpu_ready:
            return []
        return sorted(c for c in set(gpu_classes) if not self.has_own_image(c))

    def check_gpu_images(self, gpu_classes: Iterable[str]) -> None:
        """``EC2ConfigError`` naming the GPU classes without an image of their own."""
        missing = self.missing_gpu_images(gpu_classes)
        if missing:
            name = "PLOYD_EC2_AMIS" if self.amis else "PLOYD_EC2_LAUNCH_TEMPLATES"
            raise EC2ConfigError(
                f"{name}: GPU class(es) {', '.join(missing)} have no AMI/launch template of "
                'their own and would boot "default", which is not said to have NVIDIA '
                f"drivers: add them to {name} (e.g. the Deep Learning Base AMI, "
                '"resolve:ssm:/aws/service/deeplearning/ami/x86_64/'
                'base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"), limit '
                "PLOYD_EC2_ALLOWED_CLASSES, or set PLOYD_EC2_DEFAULT_GPU_READY=true"
            )

    def image_for(self, hardware_class: str) -> ImageChoice:
        """The AMI or launch template for ``hardware_class`` (``default`` when unlisted)."""
        if self.amis:
            return ImageChoice("ami", self.amis.get(hardware_class, self.amis["default"]))
        return ImageChoice(
            "launch_template",
            self.launch_templates.get(hardware_class, self.launch_templates["default"]),
        )
