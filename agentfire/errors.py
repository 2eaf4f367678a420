"""Errors that carry their exit code, so every command maps failures the same way.

Exit codes (DESIGN.md rule 2): 0 everything confirmed, 1 something not done, 2 usage or
configuration error.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_NOT_DONE = 1
EXIT_USAGE = 2


class AgentfireError(Exception):
    """An error meant for the on-call engineer: one clear line, no traceback."""

    exit_code = EXIT_NOT_DONE


class UsageError(AgentfireError):
    exit_code = EXIT_USAGE


class ConfigError(AgentfireError):
    """runbook.yaml is missing, unparsable or invalid, or names a missing env variable."""

    exit_code = EXIT_USAGE


class NotDoneError(AgentfireError):
    """The command ran but could not do what was asked (trace not found, store down...)."""

    exit_code = EXIT_NOT_DONE


class StateFileError(AgentfireError):
    """A local file that matters (flag file, journal, eval set) is corrupt or unwritable."""

    exit_code = EXIT_NOT_DONE
