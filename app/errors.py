"""Domain errors of the answering service. app/api/errors.py maps them to HTTP in one place."""


class RagqaError(Exception):
    """Base class: the message is safe to show to the client."""


class NotFound(RagqaError):
    pass


class BadRequest(RagqaError):
    pass


class Forbidden(RagqaError):
    pass


class Conflict(RagqaError):
    """The request clashes with the resource's state (e.g. cancelling a finished job)."""


class Unavailable(RagqaError):
    """A backend (the LLM server, the store) cannot serve right now."""


class Overloaded(RagqaError):
    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unauthorized(RagqaError):
    pass
