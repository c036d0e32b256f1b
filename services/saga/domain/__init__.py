"""The order saga's pure rules: the lifecycle table, the order, its refunds, disputes and timers."""

from services.saga.domain.disputes import Dispute, DisputeStatus
from services.saga.domain.lifecycle import FINAL, LIFECYCLE, Transition
from services.saga.domain.orders import NOTHING, IllegalTransition, Order, Step, unknown_order
from services.saga.domain.policy import RetryPolicy, SagaPolicy, default_policy, load_policy
from services.saga.domain.refunds import COMPENSATION, OrderRuleBroken, Refund, RefundStatus, refund_of

__all__ = [
    "COMPENSATION",
    "FINAL",
    "LIFECYCLE",
    "NOTHING",
    "Dispute",
    "DisputeStatus",
    "IllegalTransition",
    "Order",
    "OrderRuleBroken",
    "Refund",
    "RefundStatus",
    "RetryPolicy",
    "SagaPolicy",
    "Step",
    "Transition",
    "default_policy",
    "load_policy",
    "refund_of",
    "unknown_order",
]
