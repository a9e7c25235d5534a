"""Python bytecodes per login, by function: where a login's Python goes.

What callgrind's count of the interpreter's loop cannot tell apart (the
loop's own Python, picows's, alphapoint's): a client of ``clients.py`` runs
its logins under ``sys.settrace`` with opcode events, N and 6N of them (each
after the same warm-up), and the difference divided by 5N is each
function's bytecodes per login.

    python benchmarks/login_opcodes.py [--client alphapoint-fast] [-n 10] [--top 40]

It starts the echo server of ``servers.py`` and runs the client under asyncio.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections import Counter
from types import FrameType

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clients
from opcodes import count_opcodes
from servers import ServerProcess, available_impls


def where(frame: FrameType) -> str:
    """``package/module.py:function`` of a frame's code."""
    path = frame.f_code.co_filename
    package = os.path.basename(os.path.dirname(path))
    return f"{package}/{os.path.basename(path)}:{frame.f_code.co_name}"


def count(url: str, client: str, n: int, creds: clients.Credentials) -> Counter[str]:
    """Bytecodes executed per function during ``n`` logins (and the warm-up's)."""
    return count_opcodes(
        lambda: clients.run_on("asyncio", clients.LOGINS[client, "asyncio"], url, n, 5, creds),
        where,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", default="alphapoint-fast")
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    creds = clients.Credentials(secrets.token_hex(8), secrets.token_hex(16), "7")
    server = ServerProcess(available_impls()[0], creds.api_key, creds.api_secret, creds.user_id)
    try:
        small = count(server.url, args.client, args.n, creds)
        large = count(server.url, args.client, 6 * args.n, creds)
    finally:
        server.close()
    per_login: dict[str, float] = {
        name: (large[name] - small[name]) / (5 * args.n) for name in large.keys() | small.keys()
    }
    own = sum(v for k, v in per_login.items() if k.startswith(("alphapoint/", "drivers/")))
    print(
        f"{args.client}: {sum(per_login.values()):.0f} bytecodes per login, "
        f"{own:.0f} of them alphapoint's own"
    )
    ranked = sorted(per_login.items(), key=lambda item: -item[1])
    for name, value in ranked[: args.top]:
        print(f"{value:8.1f}  {name}")


if __name__ == "__main__":
    main()
