"""Reading one registry YAML file safely, and finding the line of a key path in it.

Only the safe YAML parser is used (libyaml's when present), and its events are turned into
plain values here rather than by PyYAML's composer and constructor, so that:

- aliases (``*name``) are refused: no "billion laughs", and every value is written out once;
- duplicate keys, non-string keys, merge keys, several documents and tags other than the
  core scalar ones are reported instead of being silently resolved;
- sequences become tuples (the models are immutable) and nesting is bounded;
- 100,000 services load in a few seconds (no node tree is built).

Line numbers are not kept during a successful load (that would cost time and memory);
`YamlDocument.line_of` composes the file when a problem needs the line of a key path.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

__all__ = [
    "FIRST_CHARS",
    "MAX_DEPTH",
    "TEXT_TAGS",
    "Loc",
    "Problem",
    "YamlDocument",
    "format_loc",
    "paused_gc",
    "plain_scalar_tag",
    "read_yaml",
]

Loc = tuple[str | int, ...]

# libyaml's parser when PyYAML was built with it (the wheels are), else the pure-Python one.
# Both are the *safe* loaders: no Python object construction is possible through them.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 32
_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (_TAG + t for t in ("str", "null", "bool", "int", "float"))
_TIMESTAMP, _SEQ, _MAP = _TAG + "timestamp", _TAG + "seq", _TAG + "map"
_MERGE_TAG = _TAG + "merge"
# A date-looking value stays text (no registry key is a date); "=" and the like too.
TEXT_TAGS = frozenset({_STR, _TIMESTAMP, _TAG + "value", _TAG + "yaml"})
_IMPLICIT: dict[Any, list[tuple[str, Any]]] = Resolver.yaml_implicit_resolvers
FIRST_CHARS = frozenset(key for key in _IMPLICIT if key)
_SCALAR_CONSTRUCTORS: dict[str, Any] = {
    _BOOL: SafeConstructor.construct_yaml_bool,
    _INT: SafeConstructor.construct_yaml_int,
    _FLOAT: SafeConstructor.construct_yaml_float,
}
_MERGE = object()  # a ``<<`` merge key, refused


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem at a key path of a file; `line` when known where it was found."""

    loc: Loc
    message: str
    line: int | None = None


def format_loc(loc: Loc) -> str:
    """``('services', 2, 'url')`` -> ``services[2].url``."""
    out: list[str] = []
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else part)
    return "".join(out)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic objects.

    A 100,000-service registry creates several million parser events and values; without
    this the collector rescans the young values over and over and loading is several times
    slower. Nothing built here is cyclic, so nothing is left for the collector to find. The
    pause is process-wide while it lasts (a few seconds at most).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class YamlDocument:
    """One file of a registry directory: its text, its values, and what was wrong with it.

    `data` is None when the file could not be read as YAML at all.
    """

    __slots__ = ("_root", "_text", "data", "fast", "path", "problems", "sha256")

    def __init__(
        self,
        path: Path,
        text: str,
        sha256: str,
        data: object,
        problems: list[Problem],
        *,
        fast: bool = False,
    ) -> None:
        self.path = path
        self._text = text
        self.sha256 = sha256
        self.data = data
        self.problems = problems
        self.fast = fast  # read by registry.yamlfast rather than the exact event path
        self._root: Node | None = None

    def line_of(self, loc: Loc) -> int | None:
        """The 1-based line of ``loc`` (a key's own line; the parent's when it is missing)."""
        if self._root is None:
            try:
                with paused_gc():
                    self._root = yaml.compose(self._text, Loader=_Loader)
            except (yaml.YAMLError, RecursionError):
                return None
            if self._root is None:
                return None
        node = self._root
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, MappingNode) and isinstance(part, str):
                for key, value in node.value:
                    if isinstance(key, ScalarNode) and key.value == part:
                        line, node = key.start_mark.line + 1, value
                        break
                else:
                    return line
            elif isinstance(node, SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    return line
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


def read_yaml(
    path: Path, *, fast: Callable[[str], dict[str, Any] | None] | None = None
) -> YamlDocument:
    """Read and convert one YAML file; problems are collected on the document, never raised.

    ``fast`` (`registry.yamlfast.fast_values`) is tried first when given; it declines (None),
    and the file is read the exact way, whenever its result could differ from the exact one.
    `YamlDocument.fast` says which way was taken.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problem = Problem((), f"cannot read the file: {exc.strerror}")
        return YamlDocument(path, "", "", None, [problem])
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problem = Problem((), f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line)
        return YamlDocument(path, "", sha256, None, [problem])
    if fast is not None:
        values = fast(text)
        if values is not None:
            return YamlDocument(path, text, sha256, values, [], fast=True)
    builder = _Builder()
    try:
        data = builder.build(text)
    except yaml.MarkedYAMLError as exc:
        builder.problems.append(_syntax_problem(exc))
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        message = f"invalid YAML: character {exc.character!r} is not allowed"
        builder.problems.append(Problem((), message, line))
    except yaml.YAMLError as exc:
        builder.problems.append(Problem((), f"invalid YAML: {exc}"))
    if builder.problems:
        return YamlDocument(path, text, sha256, None, builder.problems)
    return YamlDocument(path, text, sha256, data, [])


def _syntax_problem(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or "syntax error"
    context = f" ({exc.context})" if exc.context else ""
    return Problem((), f"invalid YAML: {what}{context}", None if mark is None else mark.line + 1)


class _Frame:
    """An open mapping or sequence while events are turned into values."""

    __slots__ = ("expect_key", "is_map", "items", "key", "mapping")

    def __init__(self, is_map: bool) -> None:
        self.is_map = is_map
        self.mapping: dict[str, object] = {}
        self.items: list[object] = []
        self.expect_key = True
        self.key: str | None = None  # None: the pending key was refused, drop its value


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, tuple):
        return "a list"
    return repr(value)


class _Builder:
    """Parser events to plain values, without building PyYAML's node tree.

    Going from events straight to values is three times faster than composing nodes and
    converting them, and sees aliases as events (refused) rather than as shared nodes.
    """

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._stack: list[_Frame] = []
        self._root: object = None
        self._resolved: dict[str, str] = {}
        self._constructor = SafeConstructor()

    def _loc(self) -> Loc:
        loc: list[str | int] = []
        for frame in self._stack:
            if not frame.is_map:
                loc.append(len(frame.items))
            elif frame.expect_key or frame.key is None:
                break
            else:
                loc.append(frame.key)
        return tuple(loc)

    def _problem(self, message: str, event: Event, loc: Loc | None = None) -> None:
        where = self._loc() if loc is None else loc
        mark = event.start_mark
        self.problems.append(Problem(where, message, None if mark is None else mark.line + 1))

    def build(self, text: str) -> object:
        """The value of the single document in ``text`` ({} when empty)."""
        loader = _Loader(text)
        # PyYAML's stubs leave get_event untyped.
        get_event: Callable[[], Event | None] = loader.get_event
        documents = 0
        stack = self._stack
        put = self._put
        first_chars = FIRST_CHARS
        resolved = self._resolved
        text_tags = TEXT_TAGS
        try:
            while (event := get_event()) is not None:
                kind = type(event)
                if kind is ScalarEvent:
                    assert isinstance(event, ScalarEvent)
                    # Fast path (most scalars): untagged text, or a plain scalar whose tag is
                    # already known to be text or a plain decimal, into an open collection.
                    # Anything else, and every problem, takes the full path (`_scalar`).
                    value: object = event.value
                    if stack and event.tag is None:
                        raw: str = event.value
                        if event.implicit[0] and not (raw and raw[0] not in first_chars):
                            tag = resolved.get(raw)  # a plain scalar that may not be text
                            if tag == _INT and raw.isdigit() and raw.isascii() and raw[0] != "0":
                                value = int(raw)
                            elif tag not in text_tags:
                                put(self._scalar(event), event)
                                continue
                        frame = stack[-1]
                        if not frame.is_map:
                            frame.items.append(value)
                            continue
                        if not frame.expect_key:
                            if frame.key is not None:
                                frame.mapping[frame.key] = value
                            frame.expect_key = True
                            continue
                        if value is raw and raw not in frame.mapping:
                            frame.key = raw
                            frame.expect_key = False
                            continue
                    put(self._scalar(event), event)
                elif kind is MappingStartEvent or kind is SequenceStartEvent:
                    assert isinstance(event, CollectionStartEvent)
                    if len(stack) >= MAX_DEPTH:
                        self._problem(f"nested deeper than {MAX_DEPTH} levels", event)
                        return None
                    is_map = kind is MappingStartEvent
                    if event.tag not in (None, "!", _MAP if is_map else _SEQ):
                        self._problem(f"YAML tag {event.tag} is not allowed", event)
                    stack.append(_Frame(is_map))
                elif kind is MappingEndEvent or kind is SequenceEndEvent:
                    frame = stack.pop()
                    put(frame.mapping if frame.is_map else tuple(frame.items), event)
                elif kind is AliasEvent:
                    message = "YAML aliases (*name) are not allowed; write the value out"
                    self._problem(message, event)
                    put(None, event)
                elif kind is DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        message = "a registry file holds one YAML document, not several"
                        self._problem(message, event)
                        return None
        finally:
            loader.dispose()
        root = self._root
        if root is None:
            return {}
        if not isinstance(root, dict):
            self.problems.append(
                Problem(
                    (),
                    "expected a mapping with any of the keys instance, members, groups, "
                    f"global_groups, trust_anchors, services, access; got {_shown(root)}",
                    1,
                )
            )
        return root

    def _put(self, value: object, event: Event) -> None:
        stack = self._stack
        if not stack:
            self._root = value
            return
        frame = stack[-1]
        if not frame.is_map:
            frame.items.append(value)
        elif not frame.expect_key:
            if frame.key is not None:
                frame.mapping[frame.key] = value
            frame.expect_key = True
        else:
            frame.expect_key = False
            frame.key = None
            if value is _MERGE:
                self._problem("merge keys (<<) are not allowed", event)
            elif not isinstance(value, str):
                self._problem(f"keys must be strings, got {_shown(value)}", event)
            elif value in frame.mapping:
                message = "duplicate key: a key may appear once in a mapping"
                self._problem(message, event, (*self._loc(), value))
            else:
                frame.key = value

    def _scalar(self, event: ScalarEvent) -> object:
        value: str = event.value
        tag = event.tag
        if tag is None:
            if not event.implicit[0]:  # quoted
                return value
            if value and value[0] not in FIRST_CHARS:  # the common case: plain text
                return value
            tag = self._resolved.get(value)
            if tag is None:
                tag = self._resolve(value)
        elif tag == "!":
            return value
        if tag in TEXT_TAGS:
            return value
        if tag == _MERGE_TAG:
            frame = self._stack[-1] if self._stack else None
            return _MERGE if frame is not None and frame.is_map and frame.expect_key else value
        try:
            if tag == _NULL:
                return None
            if tag == _INT and value.isdigit() and value.isascii() and value[0] != "0":
                return int(value)
            constructor = _SCALAR_CONSTRUCTORS.get(tag)
            if constructor is not None:
                return constructor(self._constructor, ScalarNode(tag, value))
        except (ConstructorError, ValueError, KeyError):
            self._problem(f"{value!r} is not a valid {tag.removeprefix(_TAG)}", event)
            return None
        self._problem(f"YAML tag {tag} is not allowed", event)
        return None

    def _resolve(self, value: str) -> str:
        """The tag YAML 1.1 gives a plain scalar, remembered for the rest of the file."""
        tag = plain_scalar_tag(value)
        if len(self._resolved) < 4096:
            self._resolved[value] = tag
        return tag


@lru_cache(maxsize=4096)
def _resolve_plain(value: str) -> str:
    resolvers = _IMPLICIT.get(value[0] if value else "", []) + _IMPLICIT.get(None, [])
    return next((tag for tag, regex in resolvers if regex.match(value)), _STR)


def plain_scalar_tag(value: str) -> str:
    """The tag YAML 1.1 gives ``value`` written as a plain scalar (PyYAML's safe resolver)."""
    if value and value[0] not in FIRST_CHARS:
        return _STR  # the common case: no implicit resolver starts with this character
    return _resolve_plain(value)
