"""``calculator``: safe arithmetic from an ``ast`` walk, never ``eval``, with bounded work."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from executus_nb.errors import ToolError
from executus_nb.tool.decorator import tool

MAX_LENGTH = 500
MAX_DEPTH = 50
MAX_INT_BITS = 4096  # about 1,233 decimal digits
MAX_ROUND_DIGITS = 1000

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
# name -> (function, fewest arguments, most arguments or None for any number)
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "sqrt": (math.sqrt, 1, 1),
    "log": (math.log, 1, 2),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "exp": (math.exp, 1, 1),
    "abs": (abs, 1, 1),
    "round": (round, 1, 2),
    "min": (lambda *args: min(args), 1, None),
    "max": (lambda *args: max(args), 1, None),
}
_SUPPORTED = "numbers, + - * / // % **, parentheses, pi, e and " + ", ".join(f"{f}()" for f in _FUNCTIONS)


@tool(timeout_s=5)
def calculator(expression: str) -> float | int:
    """Evaluate an arithmetic expression exactly as written, e.g. "2*(3+4)" or "sqrt(2)**2 + log(100, 10)".

    Args:
        expression: Numbers, + - * / // % ** (power), parentheses, pi, e and the functions
            sqrt, log, sin, cos, tan, exp, abs, round, min, max (angles in radians).
    """
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"the expression is {len(expression)} characters long; the limit is {MAX_LENGTH}, split it up")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc) or type(exc).__name__
        raise ToolError(f"cannot parse {expression!r} ({detail}); the calculator understands {_SUPPORTED}") from None
    try:
        result = _eval(tree.body, 0)
    except ZeroDivisionError:
        raise ToolError(f"{expression!r} divides by zero; check the divisor") from None
    except OverflowError:
        raise ToolError(f"{expression!r} overflows: a number grew too large to represent") from None
    except ValueError as exc:  # math domain errors, e.g. sqrt(-1) or log(0)
        raise ToolError(f"{expression!r} is outside a function's domain ({exc})") from None
    if isinstance(result, float) and not math.isfinite(result):
        raise ToolError(f"{expression!r} does not evaluate to a finite number (got {result})")
    return result


def _eval(node: ast.AST, depth: int) -> Number:
    """Evaluate one whitelisted node; anything else is refused with what is allowed."""
    if depth > MAX_DEPTH:
        raise ToolError(f"the expression is nested more than {MAX_DEPTH} levels deep; simplify it")
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ToolError(f"{value!r} is not a number; the calculator understands {_SUPPORTED}")
        return _bounded(value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        # A left-leaning chain (1 + 2 + 3 + …) is a long sum, not nesting: only the right side goes deeper.
        left, right = _eval(node.left, depth), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        return _bounded(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ToolError("^ is not supported; write powers with **, e.g. 2**10")
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in _FUNCTIONS:
            raise ToolError(f"{node.id} is a function; call it, e.g. {node.id}(2)")
        raise ToolError(f"unknown name {node.id!r}; the calculator understands {_SUPPORTED}")
    if isinstance(node, ast.Call):
        return _call(node, depth)
    if isinstance(node, ast.Attribute):
        raise ToolError(f"attribute access ('.{node.attr}') is not allowed; the calculator understands {_SUPPORTED}")
    raise ToolError(f"{type(node).__name__} expressions are not allowed; the calculator understands {_SUPPORTED}")


def _call(node: ast.Call, depth: int) -> Number:
    """Call a whitelisted function with positional numeric arguments."""
    if isinstance(node.func, ast.Attribute):
        raise ToolError(
            f"attribute access ('.{node.func.attr}') is not allowed; the calculator understands {_SUPPORTED}"
        )
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        shown = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        raise ToolError(f"{shown!r} is not an allowed function; the calculator understands {_SUPPORTED}")
    name = node.func.id
    fn, fewest, most = _FUNCTIONS[name]
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise ToolError(f"{name}() takes plain positional arguments only")
    if len(node.args) < fewest or (most is not None and len(node.args) > most):
        wanted = str(fewest) if fewest == most else f"{fewest} or more" if most is None else f"{fewest} to {most}"
        raise ToolError(f"{name}() takes {wanted} argument(s), got {len(node.args)}")
    args = [_eval(a, depth + 1) for a in node.args]
    if name == "round" and len(args) == 2 and not (isinstance(args[1], int) and abs(args[1]) <= MAX_ROUND_DIGITS):
        limit = MAX_ROUND_DIGITS  # a huge negative ndigits makes round() compute 10**-ndigits
        raise ToolError(f"round()'s second argument must be a whole number between -{limit} and {limit}")
    return _bounded(fn(*args))


def _power(base: Number, exponent: Number) -> Number:
    """``base ** exponent``, refused before computing when an integer result would be huge."""
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and exponent * max(abs(base).bit_length() - 1, 0) > MAX_INT_BITS
    ):
        raise ToolError(f"{base}**{exponent} is too large (the limit is about 2**{MAX_INT_BITS})")
    return _bounded(base**exponent)


def _bounded(value: Any) -> Number:
    """Refuse results that are not real numbers or are integers past ``MAX_INT_BITS``."""
    if isinstance(value, complex):
        raise ToolError("the result is a complex number; only real arithmetic is supported")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"a result is too large (the limit is about 2**{MAX_INT_BITS})")
    return value
