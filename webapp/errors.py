"""The one base class of the errors a service refuses with, in both apps (`labeling.errors`,
`training.errors`): a message for a person and an HTTP status. A view, the API or a command
catches `ServiceError` and shows the message (never a traceback); the apps' subclasses say which
side refused.
"""


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self):
        return self.message
