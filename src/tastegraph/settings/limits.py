"""Rate limits (the ``[limits]`` section): how often one caller may call the routes that enumerate,
and how many failed credentials an address may send before it is locked out."""

from __future__ import annotations

from pydantic import Field, field_validator

from tastegraph.settings.sections import Section

__all__ = ["LimitsSettings"]


def _check_rates(value: str) -> str:
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a rate: write e.g. '300/minute' or '10/15 minutes; 50/day'"
        ) from None
    return value


class LimitsSettings(Section):
    """Rate limits: a caller over one answers 429 with ``Retry-After``. Counters live in each
    serving process (``memory://``) unless ``storage_url`` points them at a shared store."""

    enabled: bool = Field(True, description="Enforce the rate limits below.")
    enumerate: str = Field(
        "300/minute",
        description=(
            "Requests per caller to the routes that enumerate (the pin list, search, users, "
            "boards, the token list, the audit log, event queries): a token counts as one caller, "
            "callers without one count by address. Admins are not exempt. Several limits: "
            "separate them with ';' ('300/minute; 5000/hour')."
        ),
    )
    auth_failures: str = Field(
        "10/15 minutes; 50/day",
        description=(
            "Unknown, revoked or malformed credentials one address may send before its requests "
            "with credentials are refused (429 until the window frees): the first limit locks "
            "out a burst, the longer one backs off a patient guesser."
        ),
    )
    storage_url: str = Field(
        "memory://",
        description=(
            "Where counters live, as a `limits` storage URL. `memory://` is per process: with "
            "several serving processes each counts on its own (so a caller gets up to N times "
            "the limit); `redis://HOST:6379` (needs the redis package) shares them."
        ),
    )

    _rates = field_validator("enumerate", "auth_failures")(_check_rates)
