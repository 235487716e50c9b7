"""Functions: Segment's source, destination and insert functions, in JavaScript or Python.

``contract.py`` is what every other part reads (kinds, handlers, one invocation's outcome and
its Event Delivery code); ``sandbox/`` runs user code in isolated processes; the rest keeps
functions, their versions and logs, and wires each kind into the data flow (docs/functions.md).
"""
