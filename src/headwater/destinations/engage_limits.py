"""The request rates Segment holds Engage's event destinations to (§14.4), per second.

Most pressure comes from an audience's first sync, when every member is sent at once; these
keep a new audience from tripping the tool's own limits. They apply to destination instances on
a space's Engage source that set no ``rate_limit_per_second`` of their own. A destination is
known by its catalog name's start, so Segment's classic name and its Actions version
(``Braze`` and ``Braze Cloud Mode (Actions)``) share a limit; the longest matching name wins
(``Salesforce Marketing Cloud`` before ``Salesforce``).
"""

from __future__ import annotations

from typing import Final

RATES: Final[dict[str, float]] = {
    "braze": 100,
    "customer.io": 30,
    "hubspot": 5 * 2,  # 5 objects a second, 2 calls an object
    "intercom": 8,
    "iterable": 500,
    "mailchimp": 10,
    "marketo": 5,
    "marketo static lists": 5,
    "pardot": 2,
    "resci": 200,
    "responsys": 3,
    "sendgrid": 100,
    "sendgrid lists": 100,
    "salesforce": 5,
    "salesforce marketing cloud": 20,
    "sfmc": 20,
    "zendesk": 50,
}
_BY_LENGTH = sorted(RATES, key=len, reverse=True)


def engage_rate(catalog_name: str) -> float | None:
    """Requests per second for an Engage destination of this catalog name, if Segment sets one."""
    name = catalog_name.lower()
    for prefix in _BY_LENGTH:
        if name == prefix or name.startswith(prefix + " ") or name.startswith(prefix + "("):
            return RATES[prefix]
    return None
