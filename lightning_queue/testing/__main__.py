"""`python -m lightning_queue.testing`: serve the stand-in model until SIGINT or SIGTERM (benchmarks, demos)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from .server import StandInModelServer


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with StandInModelServer(host=args.host, port=args.port, token_ids=args.token_ids) as server:
        print(f"stand-in model (a test double, not a model) at {server.url}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the scripted stand-in model (echoes the last user message).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-ids", choices=["requested", "always", "never"], default="requested")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
