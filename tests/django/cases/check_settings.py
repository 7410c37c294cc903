"""The example project's settings, patched from CASE_OVERRIDES (JSON) for one check scenario.

``{"DATABASES": {"default": {"DISABLE_SERVER_SIDE_CURSORS": false}}}`` changes keys of an
entry (OPTIONS and PGMUX are merged key by key); an alias that does not exist yet starts as a
copy of ``default``. Other top-level keys replace settings.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from djangoapp.settings import *  # noqa: F403
from djangoapp.settings import DATABASES

_overrides: dict[str, Any] = json.loads(os.environ.get("CASE_OVERRIDES", "{}"))
for _alias, _patch in _overrides.pop("DATABASES", {}).items():
    _entry = DATABASES.setdefault(_alias, copy.deepcopy(DATABASES["default"]))
    for _key, _value in _patch.items():
        if isinstance(_value, dict) and isinstance(_entry.get(_key), dict):
            _entry[_key].update(_value)
        else:
            _entry[_key] = _value
globals().update(_overrides)
