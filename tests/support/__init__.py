"""Helpers shared by every test package: servers, clocks, waiting, ports and markers.

Plain modules, not fixtures: the fixtures live in tests/conftest.py and the packages' conftests.
"""
