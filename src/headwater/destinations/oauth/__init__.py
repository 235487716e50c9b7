"""An OAuth destination's first tokens: ``headwater catalog oauth NAME`` (``command``) runs the
authorization-code flow on loopback (``flow``) against the provider's documented endpoints
(``providers``); later tokens come from the definition's own ``refreshAccessToken``."""
