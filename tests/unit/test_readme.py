"""README.md stays true to the code: every setting documented, the two commands named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stream.settings import Settings, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [env_name(f.name) for f in dataclasses.fields(Settings)
               if f"`{env_name(f.name)}`" not in README]
    assert not missing, f"add these to README.md's configuration table: {missing}"


def test_quick_start_names_the_demo_and_test_commands() -> None:
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "make demo" in README and "make test" in README
    assert ci.strip().splitlines()[-1] == "make test"
