"""Run every benchmark and print its table."""

from __future__ import annotations

import asyncio

from bench import client_overhead


def main() -> None:
    asyncio.run(client_overhead.main())


if __name__ == "__main__":
    main()
