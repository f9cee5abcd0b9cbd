"""Errors a parser raises for a file it cannot take. The batch reports them and goes on."""


class IngestError(Exception):
    """A file that cannot be ingested; the message is the reason shown in the summary."""


class UnsupportedFormat(IngestError):
    pass


class CorruptFile(IngestError):
    pass


class EncryptedFile(IngestError):
    pass


class FileTooLarge(IngestError):
    pass


class EmptyFile(IngestError):
    pass
