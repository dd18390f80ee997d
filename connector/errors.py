"""Typed errors raised by the connector.

Every error names what was wrong (a run path, a key, an HTTP status) and never carries an API key.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class of every error the connector raises."""


class ConfigurationError(ConnectorError, ValueError):
    """Bad arguments or configuration: a malformed run path, a missing entity, a bad key list."""


class TransportError(ConnectorError):
    """The W&B API could not be reached or answered with an error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(TransportError):
    """HTTP 401/403: the API key was refused."""


class NotFoundError(TransportError, LookupError):
    """The entity, project or run does not exist (or is not visible with this key)."""


class RateLimitedError(TransportError):
    """HTTP 429 persisted past the retry budget."""


class ServerError(TransportError):
    """HTTP 5xx persisted past the retry budget."""


class ProtocolError(TransportError):
    """The server answered 200 with GraphQL errors, or with a body that is not the expected shape."""


class LocalFileError(ConnectorError):
    """A `.wandb` file is damaged or unreadable; the message names the file and byte offset."""
