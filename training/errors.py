"""The errors a training service raises; each carries a message for a person and an HTTP status.

Views show the message (never a traceback); the admin turns it into a message bar.
"""

from webapp.errors import ServiceError


class TrainingError(ServiceError):
    """Refused by a training service."""


class Invalid(TrainingError):
    """Bad input, or not enough data to train on: nothing was created."""

    status = 400


class NotFound(TrainingError):
    status = 404


class Conflict(TrainingError):
    """The run is not in a state that allows this (e.g. starting a run that is running)."""

    status = 409


class RateLimited(TrainingError):
    """Too many requests from one person in a short time: try again in a moment."""

    status = 429
