"""Logging to the host's log (``wasmtx:script/log``). Lines past the host's log limits are
dropped and counted by the host; logging never fails the script."""

from wit_world.imports import log as _wit

_LEVELS = {
    "trace": _wit.Level.TRACE,
    "debug": _wit.Level.DEBUG,
    "info": _wit.Level.INFO,
    "warn": _wit.Level.WARN,
    "error": _wit.Level.ERROR,
}


def log(level: str, message: str) -> None:
    """Writes ``message`` at ``level``: ``trace``, ``debug``, ``info``, ``warn`` or ``error``."""
    try:
        wit_level = _LEVELS[level]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; one of {', '.join(_LEVELS)}") from None
    _wit.log(wit_level, str(message))


def trace(message: str) -> None:
    log("trace", message)


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warn(message: str) -> None:
    log("warn", message)


def error(message: str) -> None:
    log("error", message)
