"""Django's test runner, test client and live server through pgmux in transaction mode.

The scenarios are in cases/case_orm.py; they run in the example project, in a subprocess.
"""

from __future__ import annotations

import re

from django_support import DjangoEnv


def test_orm_suite_through_pgmux(django_env: DjangoEnv) -> None:
    result = django_env.run("test", "cases.case_orm", "--noinput", "-v", "2", timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    ran = re.search(r"Ran (\d+) tests", output)
    assert ran is not None and int(ran.group(1)) >= 12, output[-3000:]
    assert "Creating test database for alias 'default'" in output
    # pgmux closes its idle connections to test_djangoapp before Django drops it.
    assert "Destroying test database for alias 'default'" in output
