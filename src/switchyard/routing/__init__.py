"""From a requested model name to an ordered plan of deployments, and the execution of that plan.

``router`` plans (strategies in ``strategies``, fitness and health filtering), ``executor`` runs a plan
(failover, retries, fallbacks, hedging, timeouts), ``health`` keeps each deployment's breaker and latency, and
``explain`` describes a plan for people.
"""

from .executor import Attempt, Executor, StreamLease, classify
from .health import HealthRegistry, Outcome
from .router import Plan, Router, RouteSpec

__all__ = ["Attempt", "Executor", "HealthRegistry", "Outcome", "Plan", "RouteSpec", "Router", "StreamLease",
           "classify"]
