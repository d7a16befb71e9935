"""Loading a registry directory: every problem found at once, or an immutable snapshot.

A registry is a directory of YAML files (``*.yaml``, ``*.yml``; names starting with a dot are
editor and lock files and are skipped), read in sorted order; subdirectories hold documents
and certificates and are not read as registry files. Loading runs in three steps:

1. each file is read with the safe YAML loader and converted (`registry.yamlfile`);
2. each file is validated against `registry.models.RegistryFile`; pydantic's errors are
   translated into plain sentences with the key path and line;
3. the files are checked against each other and the snapshot is built (`registry.build`).

Nothing here raises anything but `RegistryInvalid`, whose `issues` list every problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from registry.build import ParsedFile, Reported, build_registry
from registry.errors import InvalidIdentifier, RegistryInvalid, RegistryIssue
from registry.identifiers import check_part
from registry.models import (
    AccessModel,
    GroupModel,
    MemberModel,
    RegistryFile,
    ServiceModel,
    TrustAnchorModel,
)
from registry.snapshot import Registry
from registry.yamlfast import fast_values
from registry.yamlfile import Loc, Problem, YamlDocument, format_loc, paused_gc, read_yaml

__all__ = ["load_registry", "registry_files"]

M = TypeVar("M", bound=BaseModel)

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
}
# The error types raised by registry.models' own validators: their messages are complete.
_OWN_ERRORS = frozenset(
    {
        "identifier_type",
        "identifier",
        "url",
        "glob",
        "file_path",
        "timeout",
        "tls_pair",
        "access_empty",
        "access_endpoints",
    }
)
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def load_registry(directory: Path, *, fast_yaml: bool = True) -> Registry:
    """Load and validate the registry in ``directory``; raise `RegistryInvalid` listing all
    problems when anything is wrong.

    ``fast_yaml`` lets `registry.yamlfast` read the files it is sure of (the result is the
    same; ``False`` is for measuring the exact path alone)."""
    directory = Path(directory)
    with paused_gc():
        registry, issues, fast = _load(directory, fast=fast_yaml)
        if registry is None and fast:
            # Something is wrong: read every file again the exact way, so that each problem
            # is reported from exactly what libyaml and YAML 1.1 make of the file.
            registry, issues, _ = _load(directory, fast=False)
    if registry is None:
        raise RegistryInvalid(directory, issues)
    return registry


def registry_files(directory: Path) -> list[Path]:
    """The registry files of ``directory`` in load order (raises `RegistryInvalid`)."""
    files, problem = _registry_files(directory)
    if problem is not None:
        raise RegistryInvalid(directory, (RegistryIssue(directory, None, "", problem),))
    return files


def _registry_files(directory: Path) -> tuple[list[Path], str | None]:
    try:
        if not directory.exists():
            return [], "registry directory not found"
        if not directory.is_dir():
            return [], "not a directory"
        files = sorted(
            (
                path
                for path in directory.iterdir()
                if path.suffix in (".yaml", ".yml")
                and not path.name.startswith(".")
                and path.is_file()
            ),
            key=lambda path: path.name,
        )
    except OSError as exc:
        return [], f"cannot read the directory: {exc.strerror}"
    if not files:
        return [], "no registry files (*.yaml, *.yml) in the directory"
    return files, None


def _load(
    directory: Path, *, fast: bool
) -> tuple[Registry | None, tuple[RegistryIssue, ...], bool]:
    """The registry or its problems, and whether any file was read by the fast path."""
    files, problem = _registry_files(directory)
    if problem is not None:
        return None, (RegistryIssue(directory, None, "", problem),), False
    reported: list[Reported] = []
    parsed: list[ParsedFile] = []
    complete = True
    any_fast = False
    for path in files:
        doc = read_yaml(path, fast=fast_values if fast else None)
        any_fast = any_fast or doc.fast
        reported.extend((doc, problem) for problem in doc.problems)
        if doc.data is None:
            complete = False
        else:
            parsed.append(_validate(doc, reported))
    registry, problems = build_registry(directory, parsed, complete)
    reported.extend(problems)
    if not reported and registry is not None:
        return registry, (), any_fast
    return None, _issues(directory, reported), any_fast


def _validate(doc: YamlDocument, reported: list[Reported]) -> ParsedFile:
    """Validate one file; on errors, report them and keep the items that are valid."""
    data = doc.data
    try:
        model = RegistryFile.model_validate(data)
    except ValidationError as exc:
        reported.extend((doc, _translate(error)) for error in exc.errors(include_url=False))
        assert isinstance(data, dict)
        return _salvage(doc, data)
    return ParsedFile(
        doc=doc,
        instance=model.instance,
        members=tuple(enumerate(model.members)),
        groups=tuple(enumerate(model.groups)),
        global_groups=tuple(enumerate(model.global_groups)),
        trust_anchors=tuple(enumerate(model.trust_anchors)),
        services=tuple(enumerate(model.services)),
        access=tuple(enumerate(model.access)),
    )


def _salvage(doc: YamlDocument, data: dict[str, Any]) -> ParsedFile:
    """The valid items of a file that has invalid ones, and the raw invalid ones."""
    failed: list[tuple[str, int | None, object]] = []
    instance, unreadable = None, False
    if data.get("instance") is not None:
        try:
            value = data["instance"]
            instance = check_part(value, "instance") if isinstance(value, str) else None
        except InvalidIdentifier:
            instance = None
        unreadable = instance is None

    def items(section: str, model: type[M]) -> tuple[tuple[int, M], ...]:
        raw = data.get(section)
        if raw is None:
            return ()
        if not isinstance(raw, tuple):
            failed.append((section, None, raw))
            return ()
        good: list[tuple[int, M]] = []
        for index, item in enumerate(raw):
            try:
                good.append((index, model.model_validate(item)))
            except ValidationError:
                failed.append((section, index, item))
        return tuple(good)

    return ParsedFile(
        doc=doc,
        instance=instance,
        instance_unreadable=unreadable,
        members=items("members", MemberModel),
        groups=items("groups", GroupModel),
        global_groups=items("global_groups", GroupModel),
        trust_anchors=items("trust_anchors", TrustAnchorModel),
        services=items("services", ServiceModel),
        access=items("access", AccessModel),
        failed=tuple(failed),
    )


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_in(annotation: object) -> type[BaseModel] | None:
    if get_origin(annotation) is None and isinstance(annotation, type):
        return annotation if issubclass(annotation, BaseModel) else None
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (for listing its allowed keys)."""
    model: type[BaseModel] | None = RegistryFile
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _model_in(model.model_fields[part].annotation)
    return model


def _translate(error: ErrorDetails) -> Problem:
    """A pydantic error as a plain sentence at its key path."""
    kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return Problem(loc[:-1], f"missing required key {loc[-1]!r}")
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = "" if model is None else "; expected one of: " + ", ".join(model.model_fields)
        return Problem(loc, f"unknown key {loc[-1]!r}{allowed}")
    if kind in _TYPE_NAMES:
        return Problem(loc, f"expected {_TYPE_NAMES[kind]}, got {_show(value)}")
    if kind == "literal_error":
        return Problem(loc, f"expected {ctx.get('expected')}, got {_show(value)}")
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, int | float) else str(bound)
        return Problem(loc, f"expected a number {words} {shown}, got {_show(value)}")
    if kind in ("too_short", "string_too_short"):
        return Problem(loc, "must not be empty")
    if kind in _OWN_ERRORS:
        return Problem(loc, error["msg"])
    return Problem(loc, f"{error['msg']}, got {_show(value)}")


def _issues(directory: Path, reported: list[Reported]) -> tuple[RegistryIssue, ...]:
    issues: list[RegistryIssue] = []
    for doc, problem in reported:
        line = problem.line
        if line is None and doc is not None:
            line = doc.line_of(problem.loc)
        file = directory if doc is None else doc.path
        issues.append(RegistryIssue(file, line, format_loc(problem.loc), problem.message))
    issues.sort(key=lambda issue: (str(issue.file), issue.line or 0))
    return tuple(issues)
