"""Rate limits over the ``limits`` library: requests per caller on routes that enumerate, and
failed credentials per address (a lockout that backs off). Over a limit: ``RateLimited`` (429
with ``Retry-After``)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from tastegraph.errors import RateLimited

if TYPE_CHECKING:
    from tastegraph.settings.limits import LimitsSettings

__all__ = ["RateLimits"]


def _say(item: Any) -> str:
    """``10 per 15 minutes``, ``300 per minute`` (the library writes ``10 per 15 minute``)."""
    unit, n = item.GRANULARITY.name, item.multiples
    return f"{item.amount} per {unit}" if n == 1 else f"{item.amount} per {n} {unit}s"


class RateLimits:
    """The limits of one serving process (counters where ``storage_url`` says)."""

    def __init__(self, settings: LimitsSettings) -> None:
        from limits import parse_many, storage, strategies

        self.enabled = settings.enabled
        self._limiter = strategies.MovingWindowRateLimiter(
            storage.storage_from_string(settings.storage_url)
        )
        self._enumerate = parse_many(settings.enumerate)
        self._auth = parse_many(settings.auth_failures)

    def _retry_after(self, item: object, *key: str) -> int:
        reset = self._limiter.get_window_stats(item, *key).reset_time  # type: ignore[arg-type]
        return max(1, math.ceil(reset - time.time()))

    def enumerate(self, caller: str) -> None:
        """Count one request by ``caller`` to a route that enumerates; refuse it when over."""
        if not self.enabled:
            return
        for item in self._enumerate:
            if not self._limiter.hit(item, "enumerate", caller):
                raise RateLimited(
                    f"too many requests to routes that list or search ({_say(item)} per caller)",
                    retry_after_s=self._retry_after(item, "enumerate", caller),
                    hint="wait Retry-After seconds; page with larger limits instead of more calls",
                )

    def check_credentials(self, address: str) -> None:
        """Refuse credentials from an address that has sent too many bad ones lately."""
        if not self.enabled:
            return
        for item in self._auth:
            if not self._limiter.test(item, "auth", address):
                raise RateLimited(
                    f"too many failed credentials from this address ({_say(item)})",
                    retry_after_s=self._retry_after(item, "auth", address),
                    hint="wait Retry-After seconds, then send a valid token",
                )

    def credentials_failed(self, address: str) -> None:
        """Count one unknown, revoked or malformed credential from ``address``."""
        if self.enabled:
            for item in self._auth:
                self._limiter.hit(item, "auth", address)
