#!/usr/bin/env python3
"""The smallest minisim policy program: the lowest-indexed feasible node (as the built-in
`first-fit`). `--policy exec:./first_fit.py`; protocol in README.md here. Stdlib only."""

import json
import sys

sys.stdin.readline()  # the hello: {"protocol":"minisim-policy","version":1,"seed":N}
for line in iter(sys.stdin.readline, ""):
    nodes = json.loads(line)["nodes"]
    print(json.dumps({"node": nodes[0]["index"] if nodes else None}), flush=True)
