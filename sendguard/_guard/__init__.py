"""The guard: a facade over admission, delivery, recording and ingestion."""

from sendguard._guard._common import Clock, Sleep, utcnow
from sendguard._guard.facade import Guard

__all__ = ["Clock", "Guard", "Sleep", "utcnow"]
