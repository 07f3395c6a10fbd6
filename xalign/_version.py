"""xalign's version, defined once: the root package re-exports it as ``xalign.__version__``;
modules under ``xalign/`` import it from here (never the root package, which imports them)."""

__version__ = "0.1.0"
