"""Pure Vary rules (RFC 9111 §4.1): which request headers select a response, and do two requests match.

The edge sends upstream only the content-negotiation headers in `FORWARDED` (`forwarded` picks and
normalises them), so only they can change what the upstream answers: a header it never forwards
(User-Agent, Cookie, Authorization) counts as absent in every request, which also keeps such values
off the disk. A stored response records the values of the headers its Vary names (`select`); a
later request may reuse it only when its own values are the same (`matches`). `Vary: *` never
matches (`vary_names` returns None).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "FORWARDED",
    "Forwarded",
    "Selection",
    "forwarded",
    "matches",
    "normalise",
    "same_variant",
    "select",
    "vary_names",
]

# Request headers an upstream may negotiate on (RFC 9110 §12.5): never hop-by-hop ones, never
# credentials (the admin token rides in Authorization), never Range or validators of the client.
FORWARDED = ("accept", "accept-encoding", "accept-language", "origin")

Forwarded = tuple[tuple[str, str], ...]  # (lower-case name, normalised value), in FORWARDED order
Selection = tuple[tuple[str, str | None], ...]  # (lower-case name, normalised value; None if absent)


def normalise(value: str) -> str:
    """A field value with whitespace collapsed: single spaces inside, none around commas or the ends.

    RFC 9111 §4.1 lets a cache add or remove whitespace where the syntax allows it; repeated field
    lines are already combined with ", ". Also drops any CR or LF, so a value is safe to forward.
    """
    return ", ".join(" ".join(part.split()) for part in value.split(","))


def forwarded(headers: Mapping[str, str]) -> Forwarded:
    """The request headers the edge sends upstream (`headers` keyed by lower-case name), normalised."""
    return tuple((name, normalise(headers[name])) for name in FORWARDED if name in headers)


def vary_names(headers: Iterable[tuple[str, str]]) -> tuple[str, ...] | None:
    """The lower-case field names the response's Vary lines list, sorted; None when one is `*`."""
    names: set[str] = set()
    for key, value in headers:
        if key.lower() == "vary":
            names.update(name.strip().lower() for name in value.split(","))
    names.discard("")
    return None if "*" in names else tuple(sorted(names))


def _value(request: Forwarded, name: str) -> str | None:
    """The request's value of `name`; None when absent (distinct from an empty value)."""
    return next((v for n, v in request if n == name), None)


def select(names: Iterable[str], request: Forwarded) -> Selection:
    """The request's values of the headers `names`: what a stored response records with itself."""
    return tuple((name, _value(request, name)) for name in names)


def matches(selection: Selection, request: Forwarded) -> bool:
    """May a response recorded with `selection` answer `request` (same value, or both absent)?"""
    return all(_value(request, name) == value for name, value in selection)


def same_variant(names: tuple[str, ...] | None, first: Forwarded, other: Forwarded) -> bool:
    """May a response that varies on `names`, fetched for request `first`, also answer `other`?

    For `Vary: *` (None) only when every forwarded header is the same: the two requests would
    then be the same request upstream (and such a response is still never stored).
    """
    if names is None:
        return first == other
    return matches(select(names, first), other)
