"""A regulation's deletion, forwarded to one destination instance (§10.3).

Native destinations whose vendor has a deletion API render its requests (``delete`` of their
definition: Amplitude's User Privacy API, Mixpanel's GDPR API, another Segment workspace's
regulations); Actions destinations run their package's ``onDelete`` hook, once per user, as
Segment does; destination functions with an ``onDelete`` handler get Segment's delete event
(``{"type": "delete", "userId": …, "context": {}}``) once per user. Either way the vendor's
answer decides the step: a 2xx (or a handler that returns) finishes it, anything else is
raised for the regulation runner to retry and, in the end, to record as ``FAILED`` with the
vendor's answer. A destination that has neither raises ``NotSupported``.

Only user ids are forwarded: they are what the vendors' deletion APIs key on, and what
Segment forwards. Requests carry secrets (API keys, tokens) in headers, so an error names the
status and the vendor's message, never the request.
"""

from __future__ import annotations

import httpx

from headwater.delivery.engine import DeliveryEngine, FunctionFailed
from headwater.destinations.redirects import Redirects
from headwater.destinations.runtime.pool import HookError
from headwater.destinations.store import DestinationInfo
from headwater.privacy.erasure import Erasure, NotSupported, Progress, Target

# The vendor's deletion APIs answer in about a second; a hung one is retried by the runner.
TIMEOUT_SECONDS = 30.0
ON_DELETE = "onDelete"


class DeletionRefused(Exception):
    """The destination answered the deletion request with an error."""


class DestinationEraser:
    def __init__(
        self, destination: DestinationInfo, delivery: DeliveryEngine, redirects: Redirects
    ) -> None:
        self._destination = destination
        self._delivery = delivery
        self._redirects = redirects

    @property
    def target(self) -> Target:
        return Target("destination", self._destination.id, self._destination.name)

    def erase(self, erasure: Erasure) -> Progress | None:
        destination = self._destination
        if erasure.source_ids is not None and destination.source_id not in erasure.source_ids:
            return None  # a regulation of other sources: nothing of it came here
        user_ids = sorted(erasure.subjects.user_ids)
        if not user_ids:
            return None
        definition = destination.definition
        if definition.delete is not None:
            self._send(user_ids)
        elif definition.function is not None and ON_DELETE in definition.hooks:
            # A destination function's onDelete gets Segment's delete event (§11.3).
            for user_id in user_ids:
                event = {"type": "delete", "userId": user_id, "context": {}}
                try:
                    self._delivery.hook_from_thread(destination.id, ON_DELETE, event)
                except FunctionFailed as error:
                    raise DeletionRefused(f"{definition.name}: {error}") from None
        elif ON_DELETE in definition.hooks and definition.package_directory is not None:
            for user_id in user_ids:
                try:
                    self._delivery.hook_from_thread(destination.id, ON_DELETE, {"userId": user_id})
                except HookError as error:
                    raise DeletionRefused(f"{definition.name}: {error}") from None
        else:
            raise NotSupported(
                f"{definition.name} takes no deletion requests: ask the vendor to delete the "
                "user's data there"
            )
        return None

    def _send(self, user_ids: list[str]) -> None:
        definition = self._destination.definition
        assert definition.delete is not None
        settings = definition.parse_settings(self._destination.settings)
        requests = definition.delete(user_ids, settings)  # InvalidSettings says what is missing
        with httpx.Client(timeout=TIMEOUT_SECONDS) as client:
            for request in requests:
                response = client.request(
                    request.method,
                    self._redirects.rewrite(request.url),
                    headers=dict(request.headers),
                    content=request.body,
                )
                if not response.is_success:
                    raise DeletionRefused(
                        f"{definition.name} answered HTTP {response.status_code}: "
                        f"{response.text[:300]}"
                    )
