"""Privacy: regulations (deletion and suppression), consent, the Privacy Portal."""
