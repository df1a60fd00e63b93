"""The dashboard client: every write goes to a local mirror first, then to the service in batches.

Standard library only, because it runs inside every arm. ``evsys.tracking`` never imports the
service (``evsys.dashboard``); the two sides meet at ``wire`` (the write ops) and the HTTP API.
"""
