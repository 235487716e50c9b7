"""Protocols: tracking plans validated and enforced on the events a source sends."""
