"""The shape the code keeps (issue 14): measured by scripts/code_shape.py, held here."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import code_shape  # noqa: E402

MAX_MODULE_LINES = 250
MAX_MEDIAN_FUNCTION_LINES = 7
MAX_P90_FUNCTION_LINES = 20
MAX_CONSTRUCTOR_PARAMETERS = 5


def test_no_module_is_longer_than_the_limit() -> None:
    long = {
        code_shape.module_name(p): n
        for p in code_shape.modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_functions_stay_short() -> None:
    sizes = [f.lines for p in code_shape.modules() for f in code_shape.functions(p)]
    assert statistics.median(sizes) <= MAX_MEDIAN_FUNCTION_LINES
    assert statistics.quantiles(sizes, n=10)[-1] <= MAX_P90_FUNCTION_LINES


def test_constructors_take_few_parameters() -> None:
    wide = [
        (name, count)
        for p in code_shape.modules()
        for name, count in code_shape.constructor_parameters(p)
        if count > MAX_CONSTRUCTOR_PARAMETERS
    ]
    assert wide == []


def test_imports_point_one_way() -> None:
    assert [w for p in code_shape.modules() for w in code_shape.upward_imports(p)] == []


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [
        code_shape.module_name(p)
        for p in code_shape.modules()
        if code_shape.layer_of(code_shape.module_name(p)) is None
        and code_shape.module_name(p) != "proxy.__init__"
    ]
    assert unplaced == []


def test_no_import_cycle() -> None:
    assert code_shape.import_cycles() == []
