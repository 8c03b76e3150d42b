"""The errors a labeling service raises for bad input; each carries a message and an HTTP status.

Views render the message in a 4xx page or fragment; the API answers `{"error": message}` with
`status`. A service raises before it writes anything, or inside its transaction, so no row is
left behind.
"""

from webapp.errors import ServiceError


class LabelingError(ServiceError):
    """Refused by a labeling service."""


class Invalid(LabelingError):
    status = 400


class Forbidden(LabelingError):
    status = 403


class NotFound(LabelingError):
    status = 404


class Conflict(LabelingError):
    status = 409


class ImportFailed(Invalid):
    """An import with bad lines: `errors` lists (line number, message); nothing was written."""

    def __init__(self, message: str, *, errors: list[tuple[int, str]]):
        super().__init__(message, errors=errors)
        self.errors = errors
