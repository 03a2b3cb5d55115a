"""Scenario errors that point at file:line:field: the problem record, the line map of a YAML
document, and the translation of pydantic's errors into messages that say what is allowed (with a
"did you mean" for misspelt keys). Kept apart from the schema (:mod:`twin.scenario`), which
re-exports :class:`Problem` and :class:`ScenarioError`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from twin import limits as L
from twin.errors import TwinError


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else self.file
        return f"{loc}: {self.path or '<top>'}: {self.message}"


class ScenarioError(TwinError):
    """One or more problems in a scenario file; ``str()`` lists them all."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict:
    """Map every field path in the YAML document to its line number (1-based)."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            line_map(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            line_map(v, path + (i,), out)
    return out


def _fmt_path(loc: tuple) -> str:
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (for "did you mean")."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return model if isinstance(model, type) and issubclass(model, BaseModel) else None
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        cands = [ann] + list(inner or [])
        nxt = None
        for c in cands:
            for cc in [c] + list(getattr(c, "__args__", []) or []):
                if isinstance(cc, type) and issubclass(cc, BaseModel):
                    nxt = cc
        if nxt is None:
            return None
        model = nxt
    return model


#: what a pattern allows, in words (the regex is in twin.limits)
_PATTERN_TEXT = {
    L.NAME_PATTERN: "a name of letters, digits, '.', '_' and '-' (it names the run folder), starting with a "
                    "letter or digit, at most 64 characters",
    L.NODE_PATTERN: "a node name of 1 to 128 printable characters (no control characters such as NUL)",
    r"^[^\x00]*$": "a file name without NUL characters",
}


def problem_of(err: dict, fname: str, lines: dict, root: type[BaseModel]) -> Problem:
    """One pydantic error as a located :class:`Problem` (file, line, field path, what is allowed)."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # pydantic puts union/literal branch names into loc; keep only real path parts
    clean = tuple(p for p in loc if isinstance(p, int) or not any(ch in p for ch in "[]()"))
    line = None
    for k in range(len(clean), -1, -1):
        if clean[:k] in lines:
            line = lines[clean[:k]]
            break
    typ = err["type"]
    value = err.get("input")
    if typ == "extra_forbidden":
        key = clean[-1]
        owner = _model_at(root, clean[:-1])
        allowed = sorted(owner.model_fields) if owner else []
        guess = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        msg = f"unknown field '{key}'{hint} Allowed: {', '.join(allowed)}"
    elif typ == "missing":
        msg = "required field is missing"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if typ == "string_pattern_mismatch":
            msg = _PATTERN_TEXT.get(err.get("ctx", {}).get("pattern"), msg)
        if typ == "literal_error":
            msg = f"{value!r} is not allowed; {msg[0].lower()}{msg[1:]}"
        elif value is not None and not isinstance(value, dict | list) and "(got" not in msg:
            msg = f"{msg} (got {value!r})"
    return Problem(fname, line, _fmt_path(clean), msg)
