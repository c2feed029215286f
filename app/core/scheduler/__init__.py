"""The hardware scheduler (pure): a job's requirements + the catalog + the operator's
fleet settings + cached spot prices -> launch candidates (instance type, placement, spot
or on-demand, price), best first.

* ``model``: ``Placement``, ``Fleet``, ``Requirements``, ``Candidate``;
* ``prices``: ``SpotPrices``, the spot price cache the EC2 adapter fills;
* ``select``: ``candidates`` and the rules that order them;
* ``reserved``: whether a job may use a reservation now (state, window, tenants,
  workloads);
* ``explain``: ``why_none``, when there is no candidate;
* ``messages``: ``waiting_message`` and ``backoff``, while there is no capacity.
"""

from app.core.scheduler.explain import describe_resources, why_none
from app.core.scheduler.messages import backoff, waiting_message
from app.core.scheduler.model import (
    ON_DEMAND,
    SPOT,
    Candidate,
    Fleet,
    Market,
    Placement,
    Requirements,
    Reservation,
)
from app.core.scheduler.prices import OnDemandPrices, SpotPrices
from app.core.scheduler.select import SPOT_ESTIMATE, Scheduler, candidates, markets

__all__ = [
    "ON_DEMAND",
    "SPOT",
    "SPOT_ESTIMATE",
    "Candidate",
    "Fleet",
    "Market",
    "OnDemandPrices",
    "Placement",
    "Requirements",
    "Reservation",
    "Scheduler",
    "SpotPrices",
    "backoff",
    "candidates",
    "describe_resources",
    "markets",
    "waiting_message",
    "why_none",
]
