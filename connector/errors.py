"""Typed errors raised by the connector, and the exit status of the command line for each.

Every error names what was wrong (a run path, a key, an HTTP status) and never carries an API key.
Each class has an ``exit_code``: the status ``wandb-history`` exits with when that error ends a
command (`EXIT_CODES` is the table shown in ``--help``).

>>> AuthenticationError("refused").exit_code, ServerError("down").exit_code, RedirectError("x").exit_code
(2, 3, 2)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNS_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_BUSY = 4
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

EXIT_CODES = """\
exit status:
  0    ok
  1    some runs failed (the others are committed; re-run to retry them)
  2    usage or configuration error: a bad option, path or URL, an unknown run, key or
       project, an unusable destination, an API key the server refused, a server that
       is not the W&B API
  3    the W&B API could not be reached, or kept failing until --timeout
  4    the destination is busy (another export holds its lock)
  70   internal error (a bug: please report it, with the output of --verbose)
  130  interrupted (Ctrl-C)"""


class ConnectorError(Exception):
    """Base class of every error the connector raises."""

    exit_code: int = EXIT_USAGE


class ConfigurationError(ConnectorError, ValueError):
    """Bad arguments or configuration: a malformed run path, a missing entity, a bad key list."""

    exit_code = EXIT_USAGE


class DestinationError(ConfigurationError):
    """The export destination cannot be used (bad URL or path, not writable, wrong kind of file)."""


class DestinationBusyError(ConnectorError):
    """Another export holds the destination's lock; retry when it is done."""

    exit_code = EXIT_BUSY


class CommError(ConnectorError):
    """Shaped like the SDK's ``wandb.errors.CommError`` (``message``, ``exc``), so code that catches
    ``CommError`` ports by changing the import: every `TransportError` is one."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, msg: str, exc: BaseException | None = None) -> None:
        super().__init__(msg)
        self.message = msg
        self.exc = exc


class TransportError(CommError):
    """The W&B API could not be reached or answered with an error."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(TransportError):
    """HTTP 401/403: the API key was refused."""

    exit_code = EXIT_USAGE


class NotFoundError(TransportError, LookupError):
    """The entity, project or run does not exist (or is not visible with this key)."""

    exit_code = EXIT_USAGE


class RequestError(TransportError):
    """A 4xx answer other than 401/403/404/429: the server refused the request as sent (not retried)."""

    exit_code = EXIT_USAGE


class RateLimitedError(TransportError):
    """HTTP 429 persisted past the retry budget."""


class ServerError(TransportError):
    """HTTP 5xx persisted past the retry budget."""


class ProtocolError(TransportError):
    """The server answered 200 with GraphQL errors, or with a body that is not the expected shape."""


class EndpointError(TransportError, ConfigurationError):
    """The base URL does not lead to the W&B GraphQL API (a 405/501 on POST, say); not retried."""

    exit_code = EXIT_USAGE


class RedirectError(EndpointError):
    """The base URL answered a 3xx redirect; redirects are not followed for the GraphQL POST."""


class NotGraphQLError(EndpointError, ProtocolError):
    """The server answered 200 with a body that is not a GraphQL JSON answer (an HTML page, say)."""


class LocalFileError(ConnectorError):
    """A `.wandb` file is damaged or unreadable; the message names the file and byte offset."""


class RowError(ConnectorError, ValueError):
    """A history row cannot be used: not a JSON object, or nested deeper or holding more keys than
    the documented limits of `connector.core.values` (`MAX_DEPTH`, `MAX_KEYS_PER_ROW`).

    Rows read from the W&B API never surface as this class: the API source wraps it in a
    `ProtocolError` naming the run and the step window (``raise ... from`` this error).
    """
