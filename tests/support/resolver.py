"""DNS for tests, without DNS: names map to the addresses a test sets, and may change mid-test.

stub = StubResolver({"hooks.example": ["93.184.216.34"]})
app = create_app(settings, resolver=stub)    # registration and the sender both ask it
stub.names["hooks.example"] = ["127.0.0.1"]  # the name now points elsewhere (a rebinding)
stub.count("hooks.example")                  # how often it was asked

A name it does not know fails as an unknown name does (OSError), so nothing ever reaches real
DNS. It only answers; whether anything connects to what it answers is up to the test.
"""

import socket
from collections.abc import Mapping, Sequence

from aiohttp.abc import AbstractResolver, ResolveResult


class StubResolver(AbstractResolver):
    def __init__(self, names: Mapping[str, Sequence[str]] | None = None) -> None:
        self.names: dict[str, list[str]] = {k: list(v) for k, v in (names or {}).items()}
        self.lookups: list[str] = []

    def count(self, host: str) -> int:
        return self.lookups.count(host)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        results: list[ResolveResult] = []
        for address in self.names.get(host, []):
            found = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family in (socket.AF_UNSPEC, found):
                results.append(
                    {
                        "hostname": host,
                        "host": address,
                        "port": port,
                        "family": found,
                        "proto": 0,
                        "flags": 0,
                    }
                )
        if not results:
            raise OSError(socket.EAI_NONAME, f"Name or service not known (stub: {host})")
        return results

    async def close(self) -> None:
        pass
