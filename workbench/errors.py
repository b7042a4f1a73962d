"""The error types the workbench raises for bad input; anything else is a bug."""


class WorkbenchError(Exception):
    """Base class: a clear message about something the user can fix."""


class CheckpointError(WorkbenchError):
    """A checkpoint folder is missing, incomplete, corrupted or does not fit the request."""


class InputError(WorkbenchError, ValueError):
    """An image or a question the models cannot take (unreadable, empty, too long...)."""
