"""The ``aidp`` command line and the Python SDK it is built on (:class:`cli.sdk.Client`)."""

from cli.sdk import AidpError, ApiError, Client, NotLoggedIn, ServerUnreachable

__all__ = ["AidpError", "ApiError", "Client", "NotLoggedIn", "ServerUnreachable"]
