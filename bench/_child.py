"""One measurement in a fresh interpreter: ``python bench/_child.py MODULE:FUNCTION JSON``.

Started by ``_speedlib.run_child``: calls ``FUNCTION(opts)`` of the bench/ module ``MODULE`` on
the options ``JSON`` and prints its result as JSON on the last line of stdout. A process of its
own gives the measurement its own peak resident memory and a thread pool nothing set before.
"""

from __future__ import annotations

import importlib
import json
import sys

if __name__ == "__main__":
    module, function = sys.argv[1].split(":")
    result = getattr(importlib.import_module(module), function)(json.loads(sys.argv[2]))
    print(json.dumps(result))
