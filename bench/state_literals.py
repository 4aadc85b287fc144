"""Count the state literals in src/volumed outside the modules allowed to spell states.

A state literal is a string constant equal to the name of a volume or an instance state
(``"available"``, ``"stopping"``, ...), or a state name quoted inside SQL text
(``state = 'busy'``). Only ``domain/states.py``, ``domain/transitions.py`` and the one
store module that maps the enums to columns may hold them (issue 14): anywhere else a
literal is a rule written beside the transition table.

The scan is syntactic (``ast``), so it cannot know what a string means. Hits are sorted
into kinds, each printed with its count:

* ``sql``     a quoted state name inside a string that reads as SQL;
* ``state``   a string constant equal to a state name: counted;
* ``field``   the same word used as a key (a dict key, a subscript, the first argument of
  ``.get``): a field or property name such as ``"template"`` or ``"error"`` in an
  envelope, not a state (but a dict keyed by three states or more is a per-state table,
  so its keys count as ``state``);
* ``status``  ``"error"`` as the value of an envelope's ``status`` (``{"status": "error"}``,
  ``x.get("status") == "error"``): the API's item status, not a volume state;
* ``other``   a ``state`` hit that :data:`NOT_STATES` lists, by hand, as something else
  (a log level, a metrics label, a noun in a message), each with its reason.

The headline figure is ``sql + state``. ``field``, ``status`` and ``other`` are counted
apart, not hidden; ``--list`` prints every hit with its kind and line, to check by eye.

    .venv/bin/python bench/state_literals.py [--root SRC] [--list]
    git show 8f0bc26 ... # the base: run it on a worktree of that commit (--root)
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

VOLUME_STATES = (
    "uninitialized",
    "initializing",
    "available",
    "idle",
    "mounted",
    "busy",
    "error",
    "template",
)
INSTANCE_STATES = ("stopped", "starting", "running", "stopping")
# Spelled here on purpose: the counter must not trust the module it audits.
STATES = frozenset(VOLUME_STATES + INSTANCE_STATES)

ALLOWED = frozenset(
    {
        "domain/states.py",
        "domain/transitions.py",
        "store/_states.py",
    }
)
"""The modules that may spell states (paths under src/volumed)."""

NOT_STATES: tuple[tuple[str, str, str, str], ...] = (
    # (path, word, text on its line, why it is not a state): checked by hand, each.
    ("api/_openapi_schemas.py", "error", 'string_enum("success"', "response/item status"),
    ("api/_openapi_schemas.py", "error", '{"const": "error"}', "item status"),
    ("api/_openapi_schemas.py", "error", '"enum": ["success"', "response status"),
    ("api/envelope.py", "error", 'body["status"]', "response status"),
    ("api/templates.py", "template", "to_ref(", "a request field's name"),
    ("api/templates.py", "template", 'kind="template"', "a noun in a message"),
    ("api/volumes.py", "template", "to_ref(", "a request field's name"),
    ("api/updates.py", "template", "noun =", "a noun in a message"),
    ("domain/updates.py", "template", "No {", "a noun in a message"),
    ("cli/volume/template.py", "template", 'what="template"', "a noun in a message"),
    ("domain/audit.py", "error", "ERROR =", "an event's result"),
    ("domain/instances.py", "template", "_UNREACHABLE", "a hosted-service instance state"),
    ("metrics.py", "idle", "_connections_closed", "a metrics label (idle connection)"),
    ("settings.py", "error", "log_level", "a log level"),
    ("cli/serve.py", "error", "--log-level", "a log level"),
)
"""Hits of kind ``state`` that are not volume or instance states, printed apart."""

_SQL = re.compile(r"\b(SELECT|UPDATE|INSERT|DELETE|WHERE|AND|OR|IN|WHEN|THEN|ELSE|SET)\b")
_QUOTED = re.compile(r"'([a-z_]+)'")


@dataclass(frozen=True, slots=True)
class Hit:
    path: str
    line: int
    word: str
    kind: str


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_status_read(node: ast.AST) -> bool:
    """``x.get("status")``, ``x["status"]``: reading an envelope's status."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        first = node.args[0] if node.args else None
        return isinstance(first, ast.Constant) and first.value == "status"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "status"
    return False


def _kind(node: ast.Constant, parents: dict[ast.AST, ast.AST]) -> str:
    parent = parents.get(node)
    if isinstance(parent, ast.Dict):
        if node in parent.keys:
            # A dict keyed by several states is a per-state table (colours, say).
            named = [k for k in parent.keys if isinstance(k, ast.Constant) and k.value in STATES]
            return "state" if len(named) >= 3 else "field"
        key = parent.keys[parent.values.index(node)] if node in parent.values else None
        if isinstance(key, ast.Constant) and key.value == "status":
            return "status"
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return "field"
    if (
        isinstance(parent, ast.Call)
        and isinstance(parent.func, ast.Attribute)
        and parent.func.attr in ("get", "pop", "setdefault")
        and parent.args
        and parent.args[0] is node
    ):
        return "field"
    if isinstance(parent, ast.Compare) and any(
        _is_status_read(side) for side in (parent.left, *parent.comparators)
    ):
        return "status"
    if isinstance(parent, ast.Assign) and any(_is_status_read(target) for target in parent.targets):
        return "status"
    return "state"


def _not_a_state(rel: str, word: str, line: str) -> bool:
    return any(p == rel and w == word and text in line for p, w, text, _ in NOT_STATES)


def scan_file(path: Path, rel: str) -> list[Hit]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source, filename=str(path))
    parents = _parents(tree)
    hits: list[Hit] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        if text in STATES:
            kind = _kind(node, parents)
            if kind == "state" and _not_a_state(rel, text, lines[node.lineno - 1]):
                kind = "other"
            hits.append(Hit(rel, node.lineno, text, kind))
        elif _SQL.search(text):
            hits.extend(
                Hit(rel, node.lineno, word, "sql")
                for word in _QUOTED.findall(text)
                if word in STATES
            )
    return hits


def scan(root: Path) -> list[Hit]:
    hits: list[Hit] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel not in ALLOWED:
            hits.extend(scan_file(path, rel))
    return hits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("src/volumed"))
    parser.add_argument("--list", action="store_true", help="print every hit")
    args = parser.parse_args(argv)
    hits = scan(args.root)
    counted = [h for h in hits if h.kind in ("sql", "state")]
    kinds = Counter(h.kind for h in hits)
    print(f"state literals outside the allowed modules: {len(counted)}")
    print("  " + ", ".join(f"{k} {kinds[k]}" for k in ("sql", "state", "field", "status", "other")))
    per_file = Counter(h.path for h in counted)
    for path, count in sorted(per_file.items(), key=lambda item: (-item[1], item[0])):
        sql = sum(1 for h in counted if h.path == path and h.kind == "sql")
        print(f"  {count:4d}  {path}" + (f"  ({sql} in SQL)" if sql else ""))
    apart = Counter(h.path for h in hits if h.kind in ("field", "status", "other"))
    if apart:
        print("not counted (field names, envelope statuses, the NOT_STATES list):")
        for path, count in sorted(apart.items(), key=lambda item: (-item[1], item[0])):
            print(f"  {count:4d}  {path}")
    if args.list:
        for hit in hits:
            print(f"{hit.kind:6s} {hit.path}:{hit.line}: {hit.word}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
