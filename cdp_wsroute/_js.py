"""Evaluating JavaScript the way Playwright does: expression or function, JSON in, JSON out."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ._errors import Error, JavaScriptError, ProtocolError, UsageError

__all__ = ["call_argument", "from_remote", "is_function_source", "raise_for_exception", "wait_for_function_source"]

# `function f(...)`, `async function`, `(a, b) =>`, `a =>`, `async a =>`: a function
# we can pass straight to Runtime.callFunctionOn. What this misses (destructured
# parameters, say) still works: Frame.evaluate sees a function come back and calls it.
_FUNCTION_SOURCE = re.compile(
    r"^\s*(?:async\s+)?(?:function\b|\([^()]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)",
)

_UNSERIALIZABLE: dict[str, Any] = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    "-0": -0.0,
}

# Chromium's text for a call that reached no document: safe to run again.
NEVER_RAN = "Cannot find context with specified id"
# Chromium's texts for "the document you were evaluating in went away".
CONTEXT_GONE = (
    "Execution context was destroyed",
    "Cannot find context with specified id",
    "Inspected target navigated or closed",
    "Cannot find default execution context",
)


def is_function_source(expression: str) -> bool:
    return _FUNCTION_SOURCE.match(expression) is not None


def context_gone(error: ProtocolError) -> bool:
    return any(text in error.protocol_message for text in CONTEXT_GONE)


def call_argument(arg: Any) -> dict[str, Any]:
    """A Runtime.CallArgument for a JSON-able Python value (None is ``undefined``)."""
    if arg is None:
        return {}
    if isinstance(arg, float) and not math.isfinite(arg):
        return {"unserializableValue": "NaN" if math.isnan(arg) else ("Infinity" if arg > 0 else "-Infinity")}
    if isinstance(arg, float) and arg == 0 and math.copysign(1.0, arg) < 0:
        return {"unserializableValue": "-0"}
    try:
        json.dumps(arg, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"evaluate() takes a JSON-serializable arg: {exc}") from exc
    return {"value": arg}


def from_remote(remote: dict[str, Any]) -> Any:
    """The Python value of a by-value Runtime.RemoteObject."""
    if "unserializableValue" in remote:
        text = str(remote["unserializableValue"])
        if text in _UNSERIALIZABLE:
            return _UNSERIALIZABLE[text]
        if text.endswith("n"):  # BigInt
            return int(text[:-1])
        return text
    return remote.get("value")


def raise_for_exception(result: dict[str, Any]) -> None:
    details = result.get("exceptionDetails")
    if details is None:
        return
    raise javascript_error(details)


def javascript_error(details: dict[str, Any]) -> JavaScriptError:
    """A JavaScriptError from Runtime.ExceptionDetails, with ``name``, ``stack`` attributes."""
    exception = details.get("exception") or {}
    description = exception.get("description")
    if description is None:
        value = exception.get("value", details.get("text", "unknown error"))
        description = value if isinstance(value, str) else json.dumps(value)
    first_line = str(description).split("\n", 1)[0]
    name, sep, message = first_line.partition(": ")
    if not sep or exception.get("subtype") != "error":
        name, message = "", first_line
    error = JavaScriptError(str(description))
    error.name = name  # type: ignore[attr-defined]
    error.js_message = message  # type: ignore[attr-defined]
    error.stack = str(description)  # type: ignore[attr-defined]
    return error


def wait_for_function_source(expression: str, *, is_function: bool) -> str:
    """A function declaration that polls ``expression`` until it is truthy, then returns it.

    It runs in the page as ``fn(arg, polling, timeoutMs)``; polling is ``"raf"`` or
    milliseconds. The page-side deadline only stops a forgotten poller: Python's
    own deadline raises TimeoutError first.
    """
    predicate = expression if is_function else f"() => ({expression})"
    return f"""async function(arg, polling, timeoutMs) {{
  let predicate = ({predicate});
  const isExpression = {json.dumps(not is_function)};
  let first = true;
  const check = async () => {{
    let value = await predicate(arg);
    if (first && isExpression && typeof value === "function") {{
      predicate = value;
      value = await predicate(arg);
    }}
    first = false;
    return value;
  }};
  const initial = await check();
  if (initial) return initial;
  const stopAt = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
  return await new Promise((resolve, reject) => {{
    const schedule = () => {{
      if (polling === "raf" && document.visibilityState !== "hidden") requestAnimationFrame(tick);
      else setTimeout(tick, polling === "raf" ? 16 : polling);
    }};
    const tick = async () => {{
      let value;
      try {{ value = await check(); }} catch (e) {{ reject(e); return; }}
      if (value) {{ resolve(value); return; }}
      if (performance.now() > stopAt) {{ reject(new Error("wait_for_function: page-side deadline")); return; }}
      schedule();
    }};
    schedule();
  }});
}}"""


class ContextGone(Error):
    """Internal: the execution context went away during a call (a navigation); retried or translated."""
