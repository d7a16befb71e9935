"""REST endpoint globs and request path normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.endpoints import check_endpoint_glob, compile_endpoint, normalise_path


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("", "/"),
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("//a///b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/../b", "/b"),
        ("/a/%2e%2E/b", "/b"),
        ("/%7euser/%41", "/~user/A"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%20b", "/a%20b"),
        ("/..", None),
        ("/a/../../b", None),
        ("/%2e%2e/b", None),
        ("a/b", None),
        ("/a b", None),
        ("/a\\b", None),
        ("/a?b", None),
        ("/a#b", None),
        ("/a%2", None),
        ("/a%g0", None),
        ("/a\x00", None),
    ],
)
def test_normalise_path(raw: str, normalised: str | None) -> None:
    assert normalise_path(raw) == normalised


@pytest.mark.parametrize(
    ("glob", "problem"),
    [
        ("/", None),
        ("/**", None),
        ("/a/*/b/**", None),
        ("/files/*.json", None),
        ("/a%2Fb", None),
        ("a", "expected an absolute path glob starting with '/', got 'a'"),
        ("/a/../b", "path glob '/a/../b' contains a '..' segment; write the path out"),
        ("/a/./b", "path glob '/a/./b' contains a '.' segment; write the path out"),
        ("/a/%2e%2e/b", "path glob '/a/%2e%2e/b' contains a '..' segment; write the path out"),
        ("/a//b", "path glob '/a//b' contains an empty segment ('//')"),
        ("/a**", "path glob '/a**': '**' must be a whole path segment"),
        ("/a?", "path glob '/a?' contains a space, control character, '\\', '?' or '#'"),
        ("/a%zz", "path glob '/a%zz' contains a malformed percent-escape"),
    ],
)
def test_check_endpoint_glob(glob: str, problem: str | None) -> None:
    assert check_endpoint_glob(glob) == problem


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("/", "/", True),
        ("/", "/a", False),
        ("/**", "/", True),
        ("/**", "/a/b/c", True),
        ("/a/**", "/a", True),
        ("/a/**", "/a/", True),
        ("/a/**", "/ab", False),
        ("/a/**/z", "/a/z", True),
        ("/a/**/z", "/a/b/c/z", True),
        ("/a/**/z", "/a/b/c/y", False),
        ("/a/*", "/a/b", True),
        ("/a/*", "/a/b/", True),
        ("/a/*", "/a", False),
        ("/a/*", "/a/b/c", False),
        ("/a/*/c", "/a/b/c", True),
        ("/f/*.json", "/f/x.json", True),
        ("/f/*.json", "/f/x.jsonx", False),
        ("/f/a.b", "/f/aXb", False),
        ("/a%2Fb", "/a%2Fb", True),
        ("/a%2Fb", "/a/b", False),
        ("/%7Euser", "/~user", True),
    ],
)
def test_glob_matching(glob: str, path: str, matches: bool) -> None:
    rule = compile_endpoint("GET", glob)
    normalised = normalise_path(path)
    assert normalised is not None
    assert rule.matches("GET", normalised) is matches
    assert rule.matches("POST", normalised) is False
    assert compile_endpoint("*", glob).matches("PATCH", normalised) is matches


@given(st.text(alphabet="/.%2eEfF0a-b?#\\ ", max_size=24))
def test_normalised_paths_are_stable_and_never_climb(path: str) -> None:
    normalised = normalise_path(path)
    if normalised is None:
        return
    assert normalised.startswith("/")
    assert normalise_path(normalised) == normalised
    segments = normalised.split("/")
    assert ".." not in segments and "." not in segments
    assert "//" not in normalised
