"""Python bytecodes per event of the fan-out client, by function.

Where the instruction counts of ``fan_out.py --instructions`` cannot say
which Python function an event's instructions went to (callgrind sees the
interpreter's loop, not the functions it runs), this counts the bytecodes
each function executes: the ``merged`` client (``merge().batches()``) under
``sys.settrace`` with opcode events, for a flood of N and one of 3N events
(each after its warm-up of a tenth), the difference divided by the
difference in events. The tracer slows the client, so, as under callgrind,
most reads are larger than the picows driver's 64 KiB slice (its held path).

    python benchmarks/fan_out_opcodes.py [--events 3000] [--subscriptions 1] [--driver auto]

It starts ``fan_out.py``'s server and runs the client under asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections import Counter
from types import FrameType

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fan_out import merged_run
from opcodes import count_opcodes


def _function(frame: FrameType) -> tuple[str, str]:
    """A frame's module file and function name."""
    code = frame.f_code
    return os.path.basename(code.co_filename), code.co_name


def count(url: str, subscriptions: int, events: int, driver: str) -> Counter[tuple[str, str]]:
    """Bytecodes executed per function during one run of ``events`` events."""
    return count_opcodes(
        lambda: asyncio.run(merged_run(url, subscriptions, events, driver)), _function
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--subscriptions", type=int, default=1)
    parser.add_argument("--driver", default="auto")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(__file__), "fan_out.py"), "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().decode().split()[1])
        url = f"ws://127.0.0.1:{port}/WSGateway/"
        small = count(url, args.subscriptions, args.events, args.driver)
        large = count(url, args.subscriptions, 3 * args.events, args.driver)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait()
    events = 1.1 * 2 * args.events  # each run floods a tenth more first (its warm-up)
    per_event = {key: (large[key] - small[key]) / events for key in large}
    print(
        f"Python bytecodes per event, merge().batches(), {args.subscriptions} subscription(s),"
        f" asyncio, driver={args.driver}: {sum(per_event.values()):.1f}"
    )
    print()
    print("| function | bytecodes per event |")
    print("|---|---|")
    for (file, name), value in sorted(per_event.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {file}: {name} | {value:.1f} |")


if __name__ == "__main__":
    main()
