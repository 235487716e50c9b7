"""Identity resolution's own cost, on the in-memory graph (no storage): events per second.

    python bench/unify_resolution.py [--profiles 100000] [--events 50000]

The graph is preloaded with ``--profiles`` known users (user_id, anonymous_id, email), then
resolves Segment's realistic mix: 70 % events of known users, 20 % of anonymous visitors (half
new, half returning), 10 % identifies that join a visitor to a new user with an email. The
figure is the ceiling a stored graph can reach on one core: the SQL stores add their lookups.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from headwater.unify.memory import MemoryGraph  # noqa: E402
from headwater.unify.profile_ids import ProfileIds  # noqa: E402
from headwater.unify.resolution import Resolver  # noqa: E402

STAMP = "2025-03-01T12:00:00.000Z"


def _event(n: int, kind: str, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "messageId": f"m-{n}",
        "timestamp": STAMP,
        "receivedAt": STAMP,
        "context": {"library": {"name": "analytics.js", "version": "2.11.1"}},
    }
    if kind == "track":
        event["event"] = "Product Viewed"
        event["properties"] = {"product_id": f"p{n % 97}", "price": 19.5}
    event.update(fields)
    return event


def mix(profiles: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    events = []
    visitors: list[str] = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.7:
            u = rng.randrange(profiles)
            events.append(_event(n, "track", userId=f"user-{u}", anonymousId=f"anon-{u}"))
        elif roll < 0.9:
            if visitors and rng.random() < 0.5:
                visitor = rng.choice(visitors)
            else:
                visitor = f"visitor-{n}"
                visitors.append(visitor)
            events.append(_event(n, "page", anonymousId=visitor))
        else:
            visitor = visitors.pop() if visitors else f"visitor-{n}"
            traits = {"email": f"new-{n}@example.com", "name": "New User"}
            events.append(
                _event(n, "identify", userId=f"new-{n}", anonymousId=visitor, traits=traits)
            )
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    rng = random.Random(5)
    resolver = Resolver(MemoryGraph(), ids=ProfileIds(5))

    started = time.perf_counter()
    for u in range(args.profiles):
        traits = {"email": f"user-{u}@example.com"}
        event = _event(-u - 1, "identify", userId=f"user-{u}", anonymousId=f"anon-{u}")
        event["traits"] = traits
        resolver.resolve(event, "preload")
    preload = time.perf_counter() - started
    print(f"preload: {args.profiles} profiles in {preload:.1f} s")

    events = mix(args.profiles, args.events, rng)
    started = time.perf_counter()
    statuses: dict[str, int] = {}
    for event in events:
        status = resolver.resolve(event, "web").status
        statuses[status] = statuses.get(status, 0) + 1
    elapsed = time.perf_counter() - started
    print(
        f"mix (70 % known, 20 % anonymous, 10 % identifying): {args.events / elapsed:,.0f} "
        f"events/s, {elapsed / args.events * 1e6:.1f} µs/event, {statuses}"
    )


if __name__ == "__main__":
    main()
