"""What the HTTP policy costs per request, against a zero-latency emulator.

The same GET (a small JSON page of the httpfiles emulator, keep-alive) sent N times by a bare
`requests.Session` and by a `PolicySession` (rate limit off, so only the policy's own work is
measured: the semaphore, the token bucket's bookkeeping, classification, stats, the error
check); small batches alternate, and which side goes first alternates too, so that both sides
see the same machine; the medians of the batches are compared. Over https (the emulator's
throwaway CA) and plain http. Then the policy's own bookkeeping with the network taken out.

    python -m bench.http_policy [--requests 10000] [--rounds 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import requests

from connectors.http import HttpLimits, HttpPolicy
from emulators.base import EmulatorServer
from emulators.httpfiles import HttpFilesEmulator

TOKEN = "bench-token"
TENANT = {"tokens": [TOKEN], "groups": {"hr": ["user:a@bench.example"]}, "documents": {}}


def per_request(session: requests.Session, url: str, count: int) -> float:
    """Mean seconds per request over `count` requests."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    started = time.perf_counter()
    for _ in range(count):
        session.get(url, headers=headers).raise_for_status()
    return (time.perf_counter() - started) / count


def measure(tls: bool, count: int, rounds: int) -> dict[str, float]:
    with EmulatorServer(HttpFilesEmulator(TENANT), tls=tls) as server:
        url = server.base_url + "/api/groups"
        bare = requests.Session()
        bare.trust_env = False
        bare.verify = str(server.ca_bundle) if tls else True
        policy = HttpPolicy("bench", HttpLimits(rate=0),
                            ca_bundle=str(server.ca_bundle) if tls else None)
        session = policy.session()
        per_request(bare, url, 50)  # warm both connection pools
        per_request(session, url, 50)
        bare_times, policy_times = [], []
        batch = max(1, count // rounds)
        for i in range(rounds):
            # Alternate which side goes first: a load spike from a neighbour hits both alike.
            sides = [(bare, bare_times), (session, policy_times)]
            for client, times in sides if i % 2 == 0 else sides[::-1]:
                times.append(per_request(client, url, batch))
        b, p = statistics.median(bare_times), statistics.median(policy_times)
        return {"bare_us": b * 1e6, "policy_us": p * 1e6, "overhead_us": (p - b) * 1e6,
                "ratio": p / b, "requests": float(policy.stats.to_json()["requests"])}


def bookkeeping(count: int) -> float:
    """Seconds per request that the policy itself adds, with the network taken out: `run()`
    around a send that returns a ready answer (semaphore, token bucket, stats, classification)."""
    answer = requests.Response()
    answer.status_code, answer._content = 200, b'{"items": []}'
    policy = HttpPolicy("bench", HttpLimits(rate=1e9, burst=1))

    def send() -> requests.Response:
        return answer

    started = time.perf_counter()
    for _ in range(count):
        policy.run("GET", "https://127.0.0.1/api/groups", send)
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10000, help="per side and transport")
    parser.add_argument("--rounds", type=int, default=50, help="alternating batches")
    args = parser.parse_args()
    print(f"policy bookkeeping alone: {bookkeeping(100_000) * 1e6:.1f} µs per request")
    print("| transport | bare requests.Session | through the policy | overhead | ratio |")
    print("|---|---|---|---|---|")
    for tls in (True, False):
        r = measure(tls, args.requests, args.rounds)
        print(f"| {'https' if tls else 'http'} | {r['bare_us']:.0f} µs | {r['policy_us']:.0f} µs "
              f"| {r['overhead_us']:.0f} µs | **{r['ratio']:.2f}** |")


if __name__ == "__main__":
    main()
