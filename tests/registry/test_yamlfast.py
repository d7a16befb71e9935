"""The YAML fast path (yaml-rs) either declines or gives exactly what the exact path gives.

The exact path is `registry.yamlfile`'s libyaml event reader (YAML 1.1, aliases and tags
refused). The fast path must never give *different* values: where yaml-rs (YAML 1.2, aliases
expanded) and YAML 1.1 could disagree it declines and the file is read the exact way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.yamlfast import fast_values
from registry.yamlfile import YamlDocument, read_yaml

REPO = Path(__file__).resolve().parents[2]


def _exact(tmp_path: Path, text: str) -> YamlDocument:
    file = tmp_path / "x.yaml"
    file.write_text(text, encoding="utf-8")
    return read_yaml(file)


# Each of these means something else in YAML 1.1 than in yaml-rs, must be refused, or cannot
# be told apart from such a case without a parser (a quoted "012" gives the text a plain 012
# would not; a date starts like a number).
DECLINED = [
    "a: 'yes'\n",
    'b: "012"\n',
    "when: 2024-01-01\n",
    "a: yes\n",
    "a: Off\n",
    "a: 012\n",
    "a: 0o12\n",
    "a: 09\n",
    "a: 1e3\n",
    "a: 1.0e3\n",
    "a: -.5\n",
    "a: 1:30\n",
    "a: [1, 012]\n",
    "a: {b: 1e3}\n",
    "a:\n  - 012\n",
    '{"a":012}\n',
    "a: &x 1\nb: *x\n",
    "a: !!str 5\n",
    "a: !custom x\n",
    '{"a":*x}\n',
    "<<: {a: 1}\n",
    "a: 1\n---\nb: 2\n",
    "%YAML 1.1\n---\na: 1\n",
    "a: 1\na: 2\n",
    "1: x\n",
    "on: x\n",
    "null: x\n",
    "~: x\n",
    "? [a, b]\n: c\n",
    "a:\n\tb: 1\n",
    'a: "\\x41\\/"\n',
    "a: \x01\n",
    "- a\n- b\n",
    "just text\n",
    "".join(f"{'  ' * i}k:\n" for i in range(40)) + "  " * 40 + "v\n",
]

# These both parsers read alike: the fast path may take them.
SAME = [
    "",
    "# only a comment\n",
    "a: 1\nb: 0.5\nc: 0\nd: 10.25\n",
    "a: true\nb: false\nc: null\nd: ~\ne:\n",
    "a: 'x'\nb: \"y z\"\nc: '1e3'\n",
    "a: [x, 'y', 3]\nb: {c: d, e: [f]}\n",
    "url: http://127.0.0.1:8090/soap?x=1&y=2\n",
    "path: /items/*\nmethod: '*'\n",
    "text: |\n  line one\n  line two\n",
    "folded: >\n  a\n  b\n",
    "plain: a multi\n  line scalar\n",
    "# a comment with *stars* & !bangs\nkey: value\n",
]


@pytest.mark.parametrize("text", DECLINED)
def test_the_fast_path_declines_where_the_parsers_could_disagree(text: str) -> None:
    assert fast_values(text) is None


@pytest.mark.parametrize("text", SAME)
def test_the_fast_path_gives_what_the_exact_path_gives(tmp_path: Path, text: str) -> None:
    exact = _exact(tmp_path, text)
    assert exact.problems == []
    fast = fast_values(text)
    assert fast is not None
    assert fast == exact.data
    assert _types(fast) == _types(exact.data)  # tuples, not lists; ints, not floats


def _types(value: object) -> object:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return (type(value).__name__, [_types(item) for item in value])
    return type(value).__name__


# Mostly what registries hold (so that the fast path is taken often), some of every trap.
PLAIN = [
    "x",
    "v1",
    "true",
    "False",
    "null",
    "~",
    "0",
    "1",
    "15",
    "1.5",
    "0.25",
    "a b",
    "'quoted'",
    '"dq"',
    "http://h:80/p?a=1&b=2",
    "/a/*",
    "'*'",
    "'a''b'",
    ".inf",
    "x-y",
]
TRAPS = ["yes", "no", "on", "Off", "012", "0o12", "0x1F", "1_000", "1e3", "1.0e3", ".5", "-.5",
         "-1", "+1", "1:30", '"012"', "'yes'", "2024-01-01", "=", "<<", "*x", "&x y", "!t z",
         "-.inf", ".nan", "10.0.0.1"]  # fmt: skip
SCALARS = st.sampled_from(PLAIN * 10 + TRAPS)
KEYS = st.sampled_from(["a", "b", "name", "type", "timeout", "n", "'q'"] * 10 + ["1", "yes", "on"])


def _block(data: st.DrawFn, depth: int) -> str:
    lines = []
    for key in data(st.lists(KEYS, min_size=1, max_size=4)):
        kind = data(st.sampled_from(["scalar", "flow", "list", "map"] if depth < 3 else ["scalar"]))
        pad = "  " * depth
        if kind == "scalar":
            lines.append(f"{pad}{key}: {data(SCALARS)}")
        elif kind == "flow":
            items = data(st.lists(SCALARS, max_size=3))
            lines.append(f"{pad}{key}: [{', '.join(items)}]")
        elif kind == "list":
            lines.append(f"{pad}{key}:")
            lines.extend(f"{pad}  - {item}" for item in data(st.lists(SCALARS, max_size=3)))
        else:
            lines.append(f"{pad}{key}:")
            lines.append(_block(data, depth + 1))
    return "\n".join(lines)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fast_path_never_disagrees_with_the_exact_path(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    text = _block(data.draw, 0) + "\n"
    fast = fast_values(text)
    if fast is None:
        return
    exact = _exact(tmp_path_factory.mktemp("y"), text)
    assert exact.problems == [], text
    assert repr(fast) == repr(exact.data), text  # repr: NaN equals itself, tuples stay tuples


@pytest.mark.parametrize(
    "directory",
    [REPO / "config" / "example" / "registry"],
)
def test_the_example_registry_takes_the_fast_path(directory: Path) -> None:
    for file in sorted(directory.glob("*.yaml")):
        fast = read_yaml(file, fast=fast_values)
        assert fast.fast, file.name
        assert fast.data == read_yaml(file).data
