#!/usr/bin/env python3
"""A minisim placement policy as an external program: `--policy exec:./most_free_gpu.py`.

Speaks version 1 of the minisim-policy line protocol (see README.md here): reads a hello,
then one JSON request per line on stdin, and answers each with one line on stdout.

The rule:
- a task that asks for GPUs goes to the feasible node with the most free milli-GPUs;
- a CPU-only task goes to a node with as few GPUs as possible (keeping GPU nodes for GPU
  work), and among those to the one with the most free CPU;
- remaining ties go to the lowest node index, so the choice is deterministic.

Only the standard library is used. Diagnostics go to stderr, never stdout.
"""

import json
import sys

VERSION = 1


def choose(request):
    task = request["task"]["request"]
    nodes = request["nodes"]
    if not nodes:
        return None
    wants_gpu = task["num_gpu"] > 0 and task["gpu_milli"] > 0
    if wants_gpu:
        key = lambda n: (n["free"]["gpu_milli"], -n["index"])
    else:
        key = lambda n: (-n["capacity"]["gpu_milli"], n["free"]["cpu_milli"], -n["index"])
    return max(nodes, key=key)["index"]


def main():
    hello = json.loads(sys.stdin.readline() or "null")
    if not hello or hello.get("protocol") != "minisim-policy" or hello.get("version") != VERSION:
        print(f"most_free_gpu.py: unsupported hello {hello!r}", file=sys.stderr)
        return 2
    while True:
        line = sys.stdin.readline()
        if not line:  # minisim closed stdin: the run is over
            return 0
        request = json.loads(line)
        print(json.dumps({"node": choose(request)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
