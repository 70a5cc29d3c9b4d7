"""docs/errors.md is the catalogue of bad input: every row names the test that shows it. This checks, without
running or importing any test, that each named test exists: the file under tests/, a ``def test_...`` in it,
and each ``[parameter]`` among the ids that test's parametrisation can produce (string constants of the
file: the values, ``ids=`` lists, ``pytest.param(..., id=...)`` and the first items of case tables). It
also counts the catalogued inputs (table rows), so a lost row shows."""

from __future__ import annotations

import ast
import functools
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "errors.md")
TESTS = os.path.join(ROOT, "tests")

# file::test, then any number of [param] groups separated by ", "
#: table rows of docs/errors.md (catalogued bad inputs) at the last count; raise it when rows are added
CATALOGUED = 280

REF = re.compile(r"(test_\w+\.py)::(\w+)((?:\[[^\]\n]+\](?:,\s*)?)*)")


def catalogue_rows() -> list[str]:
    """The data rows of every table in docs/errors.md (header and separator rows left out)."""
    rows = []
    with open(DOC, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or re.match(r"^\|[-| ]+\|$", line):
            continue
        if i + 1 < len(lines) and re.match(r"^\|[-| ]+\|$", lines[i + 1]):
            continue  # a table's header
        rows.append(line)
    return rows


def references() -> list[tuple[str, str, tuple[str, ...]]]:
    """Every ``file::test[param], [param]`` named anywhere in docs/errors.md."""
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    refs = []
    for match in REF.finditer(text):
        params = tuple(re.findall(r"\[([^\]\n]+)\]", match.group(3)))
        refs.append((match.group(1), match.group(2), params))
    return refs


@functools.lru_cache(maxsize=None)
def _test_file(name: str) -> tuple[frozenset, frozenset]:
    """(names of the test functions, every string / number constant and the name of every helper, whose
    tail an ``ids=lambda f: f.__name__[n:]`` may use) of tests/NAME."""
    with open(os.path.join(TESTS, name), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    functions, constants = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            (functions if node.name.startswith("test") else constants).add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)) and not isinstance(node.value, bool):
            constants.add(str(node.value))
    return frozenset(functions), frozenset(constants)


def _param_known(param: str, constants: frozenset) -> bool:
    if param in constants or any(c.endswith("_" + param) for c in constants):
        return True
    parts = param.split("-")  # several argnames: pytest joins the ids with "-"
    return len(parts) > 1 and all(p in constants or p in ("True", "False", "None") for p in parts)


def test_the_catalogue_has_its_rows():
    rows = catalogue_rows()
    assert len(rows) >= CATALOGUED, f"docs/errors.md has {len(rows)} rows; it had {CATALOGUED}: a row was lost"
    missing = [r for r in rows if not REF.search(r)]
    assert not missing, "rows that name no test:\n" + "\n".join(missing)


REFS = references()


@pytest.mark.parametrize("ref", REFS, ids=[f"{f}::{t}" + "".join(f"[{p}]" for p in ps) for f, t, ps in REFS])
def test_every_named_test_exists(ref):
    file, test, params = ref
    assert os.path.isfile(os.path.join(TESTS, file)), f"docs/errors.md names tests/{file}, which does not exist"
    functions, constants = _test_file(file)
    assert test in functions, f"docs/errors.md names {file}::{test}, which is not a test function of that file"
    unknown = [p for p in params if not _param_known(p, constants)]
    assert not unknown, f"docs/errors.md names {file}::{test} with parameter(s) {unknown} that its parametrisation cannot produce"
