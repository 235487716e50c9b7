"""The actions runtime: Segment's published Actions destinations, run by Node.js worker processes.

``package/`` pins ``@segment/action-destinations`` in a lock file; ``install`` puts it into a
directory with ``npm ci``; ``node`` finds a Node.js that can run it.
"""
