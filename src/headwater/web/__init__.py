"""The web app: server-rendered pages over the REST API, served by ``headwater serve`` at ``/``."""
