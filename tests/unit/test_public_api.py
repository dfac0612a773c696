"""The top-level convenience API for notebooks: lazy (``import churnml`` stays light) and each
name is the package's own function, not a copy."""

from __future__ import annotations

import subprocess
import sys

import churnml


def test_import_churnml_loads_no_heavy_library():
    code = (
        "import sys, churnml; "
        "print(','.join(m for m in ('pandas', 'numpy', 'lightgbm', 'mlflow', 'sklearn', 'bentoml') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_names_are_the_package_functions():
    from churnml.data.io import load_book
    from churnml.models.registry import promote
    from churnml.models.train import train_target

    assert churnml.train is train_target
    assert churnml.load_book is load_book
    assert churnml.promote is promote
    for name in churnml._LAZY:
        assert getattr(churnml, name) is not None
        assert name in dir(churnml)
        assert name in churnml.__all__


def test_version_constants_and_unknown_name():
    assert churnml.__version__ == "0.1.0"
    assert churnml.SCHEMA_VERSION == 5
    from churnml.scoring.frame import SCHEMA_VERSION as written
    from churnml.scoring.schema import SCHEMA_VERSION as declared
    assert written is declared and written == churnml.SCHEMA_VERSION
    assert [o.name for o in churnml.OUTCOMES] == ["churn", "expansion", "contraction"]
    try:
        churnml.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("unknown attribute must raise AttributeError")
