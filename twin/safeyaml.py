"""YAML for untrusted scenario files: size, nesting and alias expansion bounded before any value
is built.

PyYAML builds recursive aliases (``a: &a [*a]``) into cyclic objects and shares aliased nodes, so
a "billion laughs" file is small in memory yet explodes when validation walks it, and deep
nesting ends in a ``RecursionError``. Here the token stream is checked for depth without
recursion, the node graph is walked iteratively for cycles and its size *after* expanding
aliases, and only then are Python values constructed. Limits live in :mod:`twin.limits`.
"""

from __future__ import annotations

import yaml

from twin import limits as L

_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
         yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


class YamlLimitError(ValueError):
    """The document breaks a limit; ``line`` is 1-based (or ``None``), ``path`` the top-level field
    it happened under (``""`` if none)."""

    def __init__(self, message: str, line: int | None = None, path: str = ""):
        super().__init__(message)
        self.line = line
        self.path = path


def _check_depth(text: str) -> None:
    depth = 0
    top, key_next = "", False  # the top-level field we are in, for the error's field path
    for tok in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(tok, _OPEN):
            depth += 1
            if depth > L.MAX_YAML_DEPTH:
                raise YamlLimitError(f"nested more than {L.MAX_YAML_DEPTH} levels deep (a scenario needs about 5)",
                                     tok.start_mark.line + 1, top)
        elif isinstance(tok, _CLOSE):
            depth -= 1
        elif isinstance(tok, yaml.KeyToken):
            key_next = depth == 1
        elif isinstance(tok, yaml.ScalarToken) and key_next:
            top, key_next = str(tok.value), False


def _top_field(root: yaml.Node, line: int) -> str:
    """The top-level key whose value spans ``line`` (1-based), for the error's field path."""
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            if k.start_mark.line + 1 <= line <= v.end_mark.line + 1:
                return str(k.value)
    return ""


def _check_graph(root: yaml.Node) -> None:
    try:
        _walk(root)
    except YamlLimitError as err:
        err.path = err.path or _top_field(root, err.line or 0)
        raise


def _walk(root: yaml.Node) -> None:
    """Iterative post-order walk: no cycles, bounded expanded size and depth."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = _children(node)
        if isinstance(node, yaml.ScalarNode) and not done:
            _check_scalar(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            if size[key] > L.MAX_YAML_NODES:
                raise YamlLimitError(f"expands to more than {L.MAX_YAML_NODES} values once aliases (*name) are "
                                     "resolved", node.start_mark.line + 1)
            if height[key] > L.MAX_YAML_DEPTH:
                raise YamlLimitError(f"nested more than {L.MAX_YAML_DEPTH} levels deep once aliases (*name) are "
                                     "resolved", node.start_mark.line + 1)
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for k in kids:
            if id(k) in on_path:
                raise YamlLimitError("a recursive alias: an anchor (&name) is used (*name) inside itself",
                                     k.start_mark.line + 1)
            if id(k) not in size:
                stack.append((k, False))


def _check_scalar(node: yaml.ScalarNode) -> None:
    """No value longer than any field needs; no integer Python would refuse to convert."""
    v = node.value
    if len(v) > L.MAX_TEXT:
        raise YamlLimitError(f"a value longer than {L.MAX_TEXT} characters", node.start_mark.line + 1)
    if node.tag == "tag:yaml.org,2002:int" and len(v) > 30:
        raise YamlLimitError(f"a number of {len(v)} digits (no field takes more than 20)", node.start_mark.line + 1)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [x for kv in node.value for x in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load(text: str) -> tuple[object, yaml.Node | None]:
    """``(data, node)`` of one YAML document within the limits.

    Raises :class:`yaml.YAMLError` for syntax errors and :class:`YamlLimitError` for a document
    that breaks a limit (too large, too deep, recursive, or expanding too far).
    """
    if len(text.encode("utf-8", "surrogatepass")) > L.MAX_FILE_BYTES:
        raise YamlLimitError(f"the file is larger than {L.MAX_FILE_BYTES} bytes (a scenario is a few kB)")
    _check_depth(text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_graph(node)
        try:
            data = loader.construct_document(node)
        except (ValueError, OverflowError) as err:  # e.g. an integer of more than 4300 digits
            raise YamlLimitError(f"a value cannot be read: {err}") from None
        return data, node
    finally:
        loader.dispose()
