"""YAML loading that remembers where every value came from.

Conversation designers fix errors by file and line, so every node of a loaded document keeps
its line number, keyed by its path (``("flows", "lost_card", "steps", 2)``).  PyYAML silently
keeps the last of two duplicate keys; here a duplicate is an error, because in a domain it is
almost always a copy-paste slip that would drop an intent or a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One designer-facing error, with where it is."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class DomainError(Exception):
    """A domain that must not be loaded; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class SourceDoc:
    """A parsed YAML file: its data plus a path → line map for error reporting."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """Line of the deepest known node on ``path`` (errors may point below a node we saw)."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None

    def problem(self, path: PathKey, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), message)


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], problems: list[Problem], file: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(Problem(file, line, f"duplicate key {key!r} (first at line {seen[key]})"))
            seen[key] = line
            _walk(value_node, (*path, key), lines, problems, file)
            lines[(*path, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, problems, file)


def parse_yaml(text: str, file: str) -> SourceDoc:
    """Parse one YAML document; raise DomainError with file:line for syntax errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise DomainError([Problem(file, line, f"invalid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise DomainError([Problem(file, None, f"invalid YAML: {exc}")]) from None
    lines: dict[PathKey, int] = {}
    problems: list[Problem] = []
    if node is not None:
        _walk(node, (), lines, problems, file)
    if problems:
        raise DomainError(problems)
    return SourceDoc(file=file, data=_stringify_keys(data), lines=lines)


def load_yaml_file(path: Path, display_name: str | None = None) -> SourceDoc:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DomainError([Problem(display_name or str(path), None, f"cannot read: {exc}")]) from None
    return parse_yaml(text, display_name or str(path))


def _stringify_keys(value: Any) -> Any:
    """YAML turns ``1:`` into an int key; designers mean the DTMF key "1"."""
    if isinstance(value, dict):
        return {str(k): _stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v) for v in value]
    return value
