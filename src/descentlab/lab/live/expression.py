"""f(x, y) typed by a learner, parsed safely and differentiated symbolically.

The text is parsed by Python's own parser (``ast.parse(text, mode="eval")``) into a syntax tree that is then
checked against a whitelist — numbers, the names ``x``, ``y``, ``pi``, ``e``, ``+ − * / **`` (``^`` is read
as ``**``, with its precedence), unary ``±`` and the functions of :data:`FUNCTIONS` — and turned into a small tree of tuples. Nothing
is ever evaluated by Python: no ``eval``, no ``compile``, no attribute, subscript, keyword or comprehension
survives the check. Numbers are floats (``9**9**9`` is an overflow to ``inf``, not a billion-digit integer),
and the text and its tree are bounded in size.

The tree is evaluated three ways: on torch tensors (batched: the contour grid, f along a path, and an
autograd check in the tests), on Python floats (one point, the hot loop of a race), and differentiated
symbolically (:func:`derivative`), with constants folded so that the gradient's tree stays small.
"""

from __future__ import annotations

import ast
import math
from typing import Any, Callable

import torch

MAX_LENGTH = 400
MAX_NODES = 300
#: the gradient is evaluated at every step of every run: its trees may not be larger than this (counted as
#: evaluated, shared parts as often as they are used)
MAX_GRADIENT_WORK = 20_000

#: name -> (torch function, float function); the derivatives are in :func:`derivative`
FUNCTIONS: dict[str, tuple[Callable[[Any], Any], Callable[[float], float]]] = {
    "sin": (torch.sin, math.sin), "cos": (torch.cos, math.cos), "tan": (torch.tan, math.tan),
    "exp": (torch.exp, math.exp), "log": (torch.log, math.log), "sqrt": (torch.sqrt, math.sqrt),
    "abs": (torch.abs, abs), "tanh": (torch.tanh, math.tanh), "sinh": (torch.sinh, math.sinh),
    "cosh": (torch.cosh, math.cosh), "atan": (torch.atan, math.atan),
}
CONSTANTS = {"pi": math.pi, "e": math.e}
VARIABLES = ("x", "y")

Expr = tuple  # ("num", v) | ("var", name) | (op, a, b) for op in add sub mul div pow | ("neg", a) | ("call", f, a)


class ExpressionError(ValueError):
    """A text that is not a function of x and y in the allowed language; ``position`` is the column (0-based)
    of the culprit when known."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
ALLOWED = ("numbers, x, y, pi, e, + - * / ** (or ^), parentheses and the functions " + ", ".join(FUNCTIONS))


def parse(text: str) -> Expr:
    """The tree of ``text`` (``"(1 - x)**2 + 100*(y - x**2)**2"``); :class:`ExpressionError` names the culprit."""
    if not isinstance(text, str):
        raise ExpressionError(f"f(x, y) must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ExpressionError("f(x, y) is empty; type a formula such as x**2 + 10*y**2")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"f(x, y) is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    try:
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")  # x^2 means x², with **'s precedence
    except SyntaxError as err:
        col = (err.offset or 1) - 1
        raise ExpressionError(f"f(x, y) is not a formula: {err.msg} at column {col + 1}", col) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("f(x, y) is nested too deeply") from None
    count = [0]
    try:
        expr = _convert(tree.body, count)
    except RecursionError:
        raise ExpressionError("f(x, y) is nested too deeply") from None
    return expr


def _convert(node: ast.AST, count: list[int]) -> Expr:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ExpressionError(f"f(x, y) has more than {MAX_NODES} parts")
    where = getattr(node, "col_offset", None)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"{node.value!r} is not a number; allowed: {ALLOWED}", where)
        return ("num", float(node.value))
    if isinstance(node, ast.Name):
        if node.id in VARIABLES:
            return ("var", node.id)
        if node.id in CONSTANTS:
            return ("num", CONSTANTS[node.id])
        from descentlab.optim.registry import suggest

        close = suggest(node.id, [*VARIABLES, *CONSTANTS, *FUNCTIONS])
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ExpressionError(f"unknown name {node.id!r} in f(x, y).{hint} Allowed: {ALLOWED}", where)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return (_BINARY[type(node.op)], _convert(node.left, count), _convert(node.right, count))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _convert(node.operand, count)
        return ("neg", inner) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name is None:
            raise ExpressionError(f"{type(node.func).__name__} is not allowed in f(x, y): only the functions "
                                  f"{', '.join(FUNCTIONS)} can be called", where)
        if name not in FUNCTIONS:
            from descentlab.optim.registry import suggest

            shown = name
            close = suggest(name, FUNCTIONS)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ExpressionError(f"unknown function {shown!r} in f(x, y).{hint} Functions: {', '.join(FUNCTIONS)}",
                                  where)
        if node.keywords or len(node.args) != 1:
            raise ExpressionError(f"{name}() takes exactly one argument", where)
        return ("call", name, _convert(node.args[0], count))
    raise ExpressionError(f"{type(node).__name__} is not allowed in f(x, y); allowed: {ALLOWED}", where)


def variables(expr: Expr) -> set[str]:
    """The variables the tree uses."""
    if expr[0] == "var":
        return {expr[1]}
    if expr[0] == "num":
        return set()
    return set().union(*(variables(e) for e in expr[1:] if isinstance(e, tuple)))


# -- simplifying constructors (constant folding and 0/1 identities keep derivatives small) -----------------

def _is(expr: Expr, value: float) -> bool:
    return expr[0] == "num" and expr[1] == value


def _float_op(op: str, a: float, b: float) -> float:
    try:
        return _FLOAT_OPS[op](a, b)
    except ZeroDivisionError:
        return math.copysign(math.inf, a) if a else math.nan
    except (OverflowError, ValueError):
        return math.nan


def _pow(a: float, b: float) -> float:
    try:
        return a**b if not (a < 0 and b != int(b)) else math.nan
    except OverflowError:
        return math.inf
    except ZeroDivisionError:
        return math.inf


_FLOAT_OPS: dict[str, Callable[[float, float], float]] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b,
    "pow": _pow,
}


def add(a: Expr, b: Expr) -> Expr:
    if a[0] == "num" and b[0] == "num":
        return ("num", a[1] + b[1])
    if _is(a, 0.0):
        return b
    if _is(b, 0.0):
        return a
    return ("add", a, b)


def sub(a: Expr, b: Expr) -> Expr:
    if a[0] == "num" and b[0] == "num":
        return ("num", a[1] - b[1])
    if _is(b, 0.0):
        return a
    if _is(a, 0.0):
        return neg(b)
    return ("sub", a, b)


def mul(a: Expr, b: Expr) -> Expr:
    if a[0] == "num" and b[0] == "num":
        return ("num", a[1] * b[1])
    if _is(a, 0.0) or _is(b, 0.0):
        return ("num", 0.0)
    if _is(a, 1.0):
        return b
    if _is(b, 1.0):
        return a
    return ("mul", a, b)


def div(a: Expr, b: Expr) -> Expr:
    if a[0] == "num" and b[0] == "num":
        return ("num", _float_op("div", a[1], b[1]))
    if _is(a, 0.0):
        return ("num", 0.0)
    if _is(b, 1.0):
        return a
    return ("div", a, b)


def power(a: Expr, b: Expr) -> Expr:
    if a[0] == "num" and b[0] == "num":
        return ("num", _pow(a[1], b[1]))
    if _is(b, 1.0):
        return a
    if _is(b, 0.0):
        return ("num", 1.0)
    return ("pow", a, b)


def neg(a: Expr) -> Expr:
    if a[0] == "num":
        return ("num", -a[1])
    if a[0] == "neg":
        return a[1]
    return ("neg", a)


def call(name: str, a: Expr) -> Expr:
    if a[0] == "num":
        try:
            return ("num", float(FUNCTIONS[name][1](a[1])))
        except (ValueError, OverflowError):
            pass
    return ("call", name, a)


def simplify(expr: Expr) -> Expr:
    """The tree with constants folded."""
    kind = expr[0]
    if kind in ("num", "var"):
        return expr
    if kind == "neg":
        return neg(simplify(expr[1]))
    if kind == "call":
        return call(expr[1], simplify(expr[2]))
    return _BUILD[kind](simplify(expr[1]), simplify(expr[2]))


_BUILD = {"add": add, "sub": sub, "mul": mul, "div": div, "pow": power}


def derivative(expr: Expr, var: str) -> Expr:
    """∂expr/∂var, symbolically (the product, quotient, power and chain rules)."""
    kind = expr[0]
    if kind == "num":
        return ("num", 0.0)
    if kind == "var":
        return ("num", 1.0 if expr[1] == var else 0.0)
    if kind == "neg":
        return neg(derivative(expr[1], var))
    if kind in ("add", "sub"):
        return _BUILD[kind](derivative(expr[1], var), derivative(expr[2], var))
    if kind == "mul":
        a, b = expr[1], expr[2]
        return add(mul(derivative(a, var), b), mul(a, derivative(b, var)))
    if kind == "div":
        a, b = expr[1], expr[2]
        return div(sub(mul(derivative(a, var), b), mul(a, derivative(b, var))), power(b, ("num", 2.0)))
    if kind == "pow":
        a, b = expr[1], expr[2]
        da, db = derivative(a, var), derivative(b, var)
        if b[0] == "num":  # d(a^c) = c a^(c−1) da
            return mul(mul(b, power(a, ("num", b[1] - 1.0))), da)
        # d(a^b) = a^b (db ln a + b da / a)
        return mul(expr, add(mul(db, call("log", a)), div(mul(b, da), a)))
    name, a = expr[1], expr[2]
    da = derivative(a, var)
    outer = {
        "sin": lambda: call("cos", a), "cos": lambda: neg(call("sin", a)),
        "tan": lambda: add(("num", 1.0), power(call("tan", a), ("num", 2.0))),
        "exp": lambda: call("exp", a), "log": lambda: div(("num", 1.0), a),
        "sqrt": lambda: div(("num", 0.5), call("sqrt", a)), "abs": lambda: _sign(a),
        "tanh": lambda: sub(("num", 1.0), power(call("tanh", a), ("num", 2.0))),
        "sinh": lambda: call("cosh", a), "cosh": lambda: call("sinh", a),
        "atan": lambda: div(("num", 1.0), add(("num", 1.0), power(a, ("num", 2.0)))),
    }[name]()
    return mul(outer, da)


def _sign(a: Expr) -> Expr:
    return div(a, call("abs", a))  # sign(a) (nan at 0, where |a| has no derivative)


# -- evaluation ------------------------------------------------------------------------------------------------

def to_torch(expr: Expr, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The tree evaluated on tensors (batched, differentiable); non-finite values where the maths has none."""
    kind = expr[0]
    if kind == "num":
        return torch.full_like(x, expr[1])
    if kind == "var":
        return x if expr[1] == "x" else y
    if kind == "neg":
        return -to_torch(expr[1], x, y)
    if kind == "call":
        return FUNCTIONS[expr[1]][0](to_torch(expr[2], x, y))
    a, b = to_torch(expr[1], x, y), to_torch(expr[2], x, y)
    if kind == "add":
        return a + b
    if kind == "sub":
        return a - b
    if kind == "mul":
        return a * b
    if kind == "div":
        return a / b
    return torch.pow(a, b)


def to_float(expr: Expr) -> Callable[[float, float], float]:
    """A function ``(x, y) -> float`` built as nested closures (nothing is compiled or evaluated from text).
    A value with no real result (log of a negative number, 0 ** −1, an overflow) is ``nan`` or ``inf``."""
    kind = expr[0]
    if kind == "num":
        v = expr[1]
        return lambda x, y: v
    if kind == "var":
        return (lambda x, y: x) if expr[1] == "x" else (lambda x, y: y)
    if kind == "neg":
        f = to_float(expr[1])
        return lambda x, y: -f(x, y)
    if kind == "call":
        g, fn = to_float(expr[2]), FUNCTIONS[expr[1]][1]

        def apply(x: float, y: float) -> float:
            try:
                return fn(g(x, y))
            except (ValueError, OverflowError):
                return math.nan
        return apply
    a, b = to_float(expr[1]), to_float(expr[2])
    if kind == "add":
        return lambda x, y: a(x, y) + b(x, y)
    if kind == "sub":
        return lambda x, y: a(x, y) - b(x, y)
    if kind == "mul":
        return lambda x, y: a(x, y) * b(x, y)
    if kind == "pow" and expr[2][0] == "num" and expr[2][1] == 2.0:
        def square(x: float, y: float) -> float:
            v = a(x, y)
            return v * v
        return square
    if kind == "pow":
        return lambda x, y: _pow(a(x, y), b(x, y))

    def divide(x: float, y: float) -> float:
        num, den = a(x, y), b(x, y)
        return num / den if den else _float_op("div", num, den)
    return divide


def evaluation_work(expr: Expr) -> int:
    """Operations one evaluation of the tree does (a subtree used twice counts twice), counted without
    expanding the shared subtrees."""
    memo: dict[int, int] = {}

    def work(node: Expr) -> int:
        key = id(node)
        if key not in memo:
            memo[key] = 1 + sum(work(c) for c in node[1:] if isinstance(c, tuple))
        return memo[key]
    return work(expr)


def to_text(expr: Expr) -> str:
    """The tree written back as a formula (fully parenthesised where needed)."""
    kind = expr[0]
    if kind == "num":
        return repr(expr[1]) if expr[1] >= 0 else f"({expr[1]!r})"
    if kind == "var":
        return expr[1]
    if kind == "neg":
        return f"(-{to_text(expr[1])})"
    if kind == "call":
        return f"{expr[1]}({to_text(expr[2])})"
    sym = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}[kind]
    return f"({to_text(expr[1])} {sym} {to_text(expr[2])})"


class Formula:
    """A parsed f(x, y) with its gradient: ``f(x, y)`` and ``grad(x, y)`` on floats, ``torch(x, y)`` batched."""

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.tree = simplify(parse(text))
        self.dx = derivative(self.tree, "x")
        self.dy = derivative(self.tree, "y")
        work = evaluation_work(self.dx) + evaluation_work(self.dy)
        if work > MAX_GRADIENT_WORK:
            raise ExpressionError(f"f(x, y)'s gradient takes {work:,} operations at every step; at most "
                                  f"{MAX_GRADIENT_WORK:,} are allowed (write it with fewer nested powers or products)")
        self.f = to_float(self.tree)
        fx, fy = to_float(self.dx), to_float(self.dy)
        self.grad = lambda x, y: (fx(x, y), fy(x, y))

    def torch(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = to_torch(self.tree, x, y)
        return out if out.shape == x.shape else out.expand_as(x)
