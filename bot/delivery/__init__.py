"""Delivering results, the same way on every platform: `Follower` drives a platform's `Channel`."""

from .channel import Channel
from .follower import Follower, FollowerConfig
from .pieces import Notice, StemPiece, Summary
from .retry import GaveUp, Rejected, RetryPolicy, Transient
from .status import ThrottledStatus

__all__ = [
    "Channel", "Follower", "FollowerConfig", "GaveUp", "Notice", "Rejected", "RetryPolicy", "StemPiece", "Summary",
    "ThrottledStatus", "Transient",
]
