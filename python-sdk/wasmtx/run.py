"""The script's entry point: :func:`run` (JSON in, JSON out) and :func:`run_text` (text in,
text out) turn a function into the component's ``run`` export.

The decorated function's return votes commit with its output. An :class:`Error` it lets
escape (:class:`Abort`, or an SDK error such as :class:`DatabaseError`) votes abort with the
error's text. Any other exception traps; the host rolls back and its error ends with the
traceback.
"""

import json
import sys
from typing import Any, Callable

from componentize_py_types import Err

from .errors import Error


def _export(module_name: str, handle: Callable[[str], str]) -> None:
    """Installs the ``WitWorld`` class componentize-py looks for in the app module."""
    import wit_world

    class WitWorld(wit_world.WitWorld):
        def run(self, input: str) -> str:
            return handle(input)

    setattr(sys.modules[module_name], "WitWorld", WitWorld)


def run_text(function: Callable[[str], str]) -> Callable[[str], str]:
    """Exports ``function(input: str) -> str`` as the script's ``run``."""

    def handle(input: str) -> str:
        try:
            output = function(input)
        except Error as e:
            raise Err(str(e)) from None
        if not isinstance(output, str):
            raise TypeError(f"{function.__name__} returned {type(output).__name__}, not str")
        return output

    _export(function.__module__, handle)
    return function


def run(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Exports ``function(input) -> output`` as the script's ``run``, with the input parsed
    from JSON and the output serialized to JSON. Input that is not JSON aborts with
    ``invalid input JSON: …`` before ``function`` is called."""

    def handle(input: str) -> str:
        try:
            request = json.loads(input)
        except ValueError as e:
            raise Err(f"invalid input JSON: {e}") from None
        try:
            output = function(request)
        except Error as e:
            raise Err(str(e)) from None
        return json.dumps(output)

    _export(function.__module__, handle)
    return function
