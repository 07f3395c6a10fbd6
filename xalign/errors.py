"""One error hierarchy: every error xalign reports to a user derives from :class:`XalignError`.

The CLI catches ``XalignError`` only and prints its message (which names the file, line, key
or plugin at fault); anything else is a bug and keeps its traceback.

Subclasses keep a builtin base as a second base (``ConfigError`` is also a ``ValueError``,
``PluginError`` a ``RuntimeError``, ...) so that code catching the builtin still works.
"""

from __future__ import annotations


class XalignError(Exception):
    """Base of every user-facing xalign error; the message says what and where."""


class ConfigError(XalignError, ValueError):
    """Bad configuration or options; the message names the file (and line) or override and
    the dotted key. Re-exported as :class:`xalign.config.ConfigError`."""


class XalignWarning(UserWarning):
    """Base of xalign's warnings (shown by the CLI as one ``warning:`` line on stderr)."""


class DeprecatedOptionWarning(XalignWarning):
    """An option given under its old (deprecated) name; the message names the old and the new
    key. The old name keeps working until it is removed."""
