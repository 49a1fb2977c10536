"""Connectors: one module per provider behind :class:`~.base.Connector`."""

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile

__all__ = ["Connector", "Credentials", "Progress", "RemoteFile"]
