"""The package's public API: every name in ``moola.annotate.__all__`` resolves, and
importing the package (or its stores) does not load the web stack."""

from __future__ import annotations

import subprocess
import sys

import moola.annotate


def test_every_public_name_resolves_to_its_module():
    for name in moola.annotate.__all__:
        value = getattr(moola.annotate, name)
        home = moola.annotate._HOMES[name]
        assert value is getattr(__import__(f"moola.annotate.{home}", fromlist=[name]), name)
    assert "create_app" in dir(moola.annotate)


def test_importing_the_package_and_the_stores_leaves_fastapi_unloaded():
    code = (
        "import sys, moola.annotate, moola.annotate.store, moola.annotate.commit, "
        "moola.cli.annotate; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
