"""PloyD's EC2 adapter: the machines EC2 jobs run on.

* ``config``: ``EC2Config.from_env`` (PLOYD_AWS_*, PLOYD_EC2_*).
* ``errors``: ``CloudError`` > ``EC2Error`` > ``CapacityError``; which codes mean what.
* ``userdata``: the cloud-init script that starts the agent with a one-time token: pure.
* ``transport``: one API call in a worker thread, throttling/outages retried: the I/O point.
* ``client``: ``EC2Client``: launch, terminate, describe_managed, state, spot prices.
"""

from app.adapters.ec2.client import LIVE_STATES, MANAGED_TAG, EC2Client, InstanceInfo, Market
from app.adapters.ec2.config import EC2Config, EC2ConfigError, ImageChoice
from app.adapters.ec2.errors import CAPACITY_CODES, CapacityError, CloudError, EC2Error
from app.adapters.ec2.transport import EC2Metrics, RetryPolicy, make_boto_client
from app.adapters.ec2.userdata import RETIRE_EXIT_CODES, parse_registration, user_data

__all__ = [
    "CAPACITY_CODES",
    "LIVE_STATES",
    "MANAGED_TAG",
    "RETIRE_EXIT_CODES",
    "CapacityError",
    "CloudError",
    "EC2Client",
    "EC2Config",
    "EC2ConfigError",
    "EC2Error",
    "EC2Metrics",
    "ImageChoice",
    "InstanceInfo",
    "Market",
    "RetryPolicy",
    "make_boto_client",
    "parse_registration",
    "user_data",
]
