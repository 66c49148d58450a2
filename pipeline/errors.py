"""The exception tree. cli.py maps each class to an exit code in one place."""


class HappyhomeError(Exception):
    """Base of every error happyhome reports to the operator without a traceback."""

    exit_code = 1


class UsageError(HappyhomeError):
    """The command was called with options that cannot work together."""

    exit_code = 2


class ConfigError(HappyhomeError):
    """happyhome.toml or an indicator system file is invalid."""

    exit_code = 2


class InputError(HappyhomeError):
    """An input file (roster, workbook) cannot be used."""

    exit_code = 3


class OutputError(HappyhomeError):
    """An output cannot be written (disk full, read-only folder, file open elsewhere)."""

    exit_code = 4


class LockedError(HappyhomeError):
    """Another happyhome run holds the workspace lock."""

    exit_code = 5


class MailError(HappyhomeError):
    """The mail server could not be reached, or broke off the session."""

    exit_code = 1
