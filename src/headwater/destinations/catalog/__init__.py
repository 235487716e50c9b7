"""One module per destination; each defines ``DEFINITION`` (see ``destinations/definition.py``).

Adding a destination is adding a module here: the registry finds it.
"""
