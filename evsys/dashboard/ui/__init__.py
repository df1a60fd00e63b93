"""The dashboard's web UI: server-rendered pages over the service's tables (``routes.install``)."""
