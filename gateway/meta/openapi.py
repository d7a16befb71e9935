"""OpenAPI documents of REST services: read, anonymised, and listed as endpoints. Pure.

The document is configuration (the registry names it), but it is handed to peers, so what it
says about where the provider lives is removed: every ``servers[].url`` (top level, per path
and per operation) is reduced to its path, as X-Road's getOpenAPI does, and server variables
no longer used by the reduced URL are dropped (their defaults often name internal hosts).
Swagger 2.0 documents lose ``host`` and ``schemes``. YAML aliases are refused: they are how a
small file expands into a huge one.

Endpoints for listMethods are the document's operations: method upper-cased, path with each
``{parameter}`` replaced by ``*``, in document order (X-Road's ``/pet/{petId}`` -> ``/pet/*``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import yaml

from gateway.meta.common import JSON_CONTENT_TYPE, MetaError

__all__ = [
    "YAML_CONTENT_TYPE",
    "anonymise_openapi",
    "load_openapi",
    "openapi_endpoints",
    "render_openapi",
]

YAML_CONTENT_TYPE = "text/yaml; charset=utf-8"

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAMETER = re.compile(r"\{[^/{}]*\}")
_VARIABLE = re.compile(r"\{([^/{}]*)\}")
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _invalid(what: str, why: str) -> MetaError:
    return MetaError(f"{what} {why}", code="ServiceFailed.InvalidMessage")


def _has_alias(data: bytes) -> bool:
    return any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(data, Loader=_Loader))


def _load_yaml(data: bytes, what: str) -> object:
    try:
        aliased = _has_alias(data)
        document = None if aliased else yaml.load(data, Loader=_Loader)  # noqa: S506 - safe loader
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as exc:
        raise _invalid(what, "is not valid YAML") from exc
    if aliased:
        raise _invalid(what, "uses YAML aliases, which are not accepted")
    return document


def load_openapi(data: bytes, *, is_json: bool, max_bytes: int, what: str) -> dict[str, Any]:
    """Parse an OpenAPI 3 or Swagger 2 document (JSON or YAML) into plain Python values.

    Raises `MetaError` ``ServiceFailed.InvalidMessage`` for anything that is not such a
    document, ``ServiceFailed.MessageTooLarge`` above ``max_bytes``.
    """
    if len(data) > max_bytes:
        raise MetaError(
            f"{what} is larger than {max_bytes} bytes", code="ServiceFailed.MessageTooLarge"
        )
    if is_json:
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _invalid(what, "is not valid JSON") from exc
    else:
        document = _load_yaml(data, what)
    if not isinstance(document, dict):
        raise _invalid(what, "is not a mapping")
    openapi, swagger = document.get("openapi"), document.get("swagger")
    if not (
        (isinstance(openapi, str) and openapi.startswith("3."))
        or (isinstance(swagger, str) and swagger.startswith("2."))
    ):
        raise _invalid(what, "is not an OpenAPI 3 or Swagger 2 document")
    return document


def _path_only(url: str) -> str:
    """``https://host:8443/api/v3?x`` -> ``/api/v3``; a relative URL keeps its path."""
    url = url.split("#", 1)[0].split("?", 1)[0]
    scheme_end = url.find("//")
    if scheme_end != -1 and ("/" not in url[:scheme_end] or url.startswith("//")):
        rest = url[scheme_end + 2 :]
        slash = rest.find("/")
        return "/" if slash == -1 else rest[slash:]
    return url or "/"


def _anonymise_servers(holder: dict[Any, Any]) -> None:
    servers = holder.get("servers")
    if not isinstance(servers, list):
        return
    for server in servers:
        if not isinstance(server, dict) or not isinstance(server.get("url"), str):
            continue
        url = _path_only(server["url"])
        server["url"] = url
        variables = server.get("variables")
        if isinstance(variables, dict):
            used = set(_VARIABLE.findall(url))
            kept = {name: value for name, value in variables.items() if name in used}
            if kept:
                server["variables"] = kept
            else:
                del server["variables"]


def anonymise_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Remove where the provider lives from ``document`` (changed in place and returned)."""
    if "swagger" in document:
        document.pop("host", None)
        document.pop("schemes", None)
    _anonymise_servers(document)
    paths = document.get("paths")
    if isinstance(paths, dict):
        for item in paths.values():
            if not isinstance(item, dict):
                continue
            _anonymise_servers(item)
            for method in _METHODS:
                operation = item.get(method)
                if isinstance(operation, dict):
                    _anonymise_servers(operation)
    return document


def openapi_endpoints(document: dict[str, Any]) -> list[tuple[str, str]]:
    """The document's operations as (METHOD, path glob) pairs, in document order."""
    paths = document.get("paths")
    if not isinstance(paths, dict):
        return []
    endpoints: list[tuple[str, str]] = []
    for path, item in paths.items():
        if not isinstance(path, str) or not path.startswith("/") or not isinstance(item, dict):
            continue
        glob = _PARAMETER.sub("*", path)
        endpoints.extend(
            (key.upper(), glob) for key in item if isinstance(key, str) and key.lower() in _METHODS
        )
    return endpoints


def render_openapi(document: dict[str, Any], *, is_json: bool) -> tuple[bytes, str]:
    """The document serialised as it came (JSON or YAML) and its Content-Type."""
    if is_json:
        body = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        return body, JSON_CONTENT_TYPE
    text = yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return text.encode("utf-8"), YAML_CONTENT_TYPE
