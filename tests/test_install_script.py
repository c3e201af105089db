"""install_requirements.sh and torchvision_cpu_shim.sh: valid bash, no pip internals, the requirement rules.

The full install (and ``--check``, which probes every compiled op) is what CI runs before the suite; these
checks are the fast part: the requirement parser / comparator the script runs in Python, on the forms the
version matrix uses.
"""
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("install_requirements.sh", "torchvision_cpu_shim.sh")


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_and_use_no_pip_internals(script):
    res = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "pip._vendor" not in (REPO / script).read_text()


def _requirement_helpers() -> dict:
    text = (REPO / "install_requirements.sh").read_text()
    code = re.search(r"^REQUIREMENTS_PY='\n(.*?)\n'$", text, re.S | re.M).group(1)
    namespace = {}
    exec(code, namespace)
    return namespace


def test_requirements_are_read_and_compared_as_pip_would():
    ns = _requirement_helpers()
    parse, satisfies = ns["parse_requirement"], ns["satisfies"]
    assert parse("pyyaml>=6") == ("pyyaml", ">=", "6")
    assert parse("addict") == ("addict", None, None)
    assert parse("fvcore==0.1.5.post20221221") == ("fvcore", "==", "0.1.5.post20221221")
    with pytest.raises(SystemExit, match="cannot read requirement 'torch<3'"):
        parse("torch<3")
    assert satisfies("2.13.0+cpu", "==", "2.13.0")  # a local version matches its release
    assert satisfies("2.1", "==", "2.1.0") and not satisfies("2.1.1", "==", "2.1.0")
    assert satisfies("0.1.5.post20221221", "==", "0.1.5.post20221221") and not satisfies("0.1.5", "==", "0.1.5.post1")
    assert satisfies("6.0.3", ">=", "6") and satisfies("10.0", ">=", "9.2") and not satisfies("5.4.1", ">=", "6")
