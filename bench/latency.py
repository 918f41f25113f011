"""Event-to-receiver latency through `hookline serve` at a light steady load (no goal set).

`hookline serve` (SQLite, fresh data dir, defaults: the worker is woken in-process after each
commit, and polls every 1 s besides) with one sink path subscribed to `user_registered`.
`POST /users` is sent at `--rate` per second for `--seconds` (open loop, unique usernames);
each registration's latency is from just before its POST was sent to its webhook's arrival
at the sink (both `time.time()` on this machine; the sink notes `data.username`).

Baselines in the same run: the POST /users answer time itself (the API's share), and the
same load POSTed straight to the sink by this process (the loopback floor). The ratio printed
is event-to-receiver p50 ÷ POST /users answer p50: how much later than its API answer the
receiver has the event.

    .venv/bin/python bench/latency.py [--quick] [--rate 50] [--seconds 10]
"""

import argparse
import shutil
import time

import aiohttp
from _common import Api, Hookline, Result, Sink, open_loop, parse_args, percentile, run, temp_dir


def summary(values: list[float]) -> dict[str, float]:
    return {f"p{q:g}": round(1000 * percentile(values, q), 2) for q in (50, 90, 99, 100)}


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.seconds = 4.0
    total = int(args.rate * args.seconds)
    data_dir = temp_dir("latency")
    serve = Hookline("serve", data_dir=data_dir)
    sent: dict[str, float] = {}
    try:
        async with Sink() as sink:
            await serve.start()
            client = Api(serve.base)
            try:
                await client.subscribe("user_registered", sink.url(0))
                await client.register_users([f"warm{n}" for n in range(20)])  # not counted
                await sink.wait_count(20)
                await sink.reset(log=True)

                async def register(i: int) -> None:
                    name = f"user{i}"
                    sent[name] = time.time()
                    await client.post("/users", {"username": name})

                answers = await open_loop(register, per_second=args.rate, seconds=args.seconds)
                await sink.wait_count(total, limit=60)
                arrivals = {name: at for at, _id, name in await sink.log()}
            finally:
                await client.close()
            serve.stop()

            # The floor: the same rate of POSTs straight to the sink, timed the same way.
            await sink.reset(log=True)
            direct_sent: dict[str, float] = {}
            async with aiohttp.ClientSession() as session:

                async def direct(i: int) -> None:
                    name = f"direct{i}"
                    body = b'{"data": {"username": "%s"}}' % name.encode()
                    direct_sent[name] = time.time()
                    async with session.post(sink.url(0), data=body) as response:
                        await response.read()

                await open_loop(direct, per_second=args.rate, seconds=min(args.seconds, 5.0))
            floor_log = await sink.log()
    finally:
        serve.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    latencies = [arrivals[name] - sent[name] for name in sent if name in arrivals]
    if len(latencies) != total:
        raise RuntimeError(f"{total - len(latencies)} webhooks did not arrive")
    floor = [at - direct_sent[name] for at, _id, name in floor_log if name in direct_sent]
    delivered = summary(latencies)
    api = summary(answers)
    return Result(
        key="latency",
        title="Event-to-receiver latency through hookline serve (light steady load)",
        ratio=percentile(latencies, 50) / percentile(answers, 50),
        goal="",
        baseline="POST /users answer p50 in the same run",
        context={
            "load": f"{args.rate:g} POST /users per second for {args.seconds:g} s (open loop),"
            " 1 endpoint",
            "event_to_receiver_ms": delivered,
            "post_users_answer_ms": api,
            "direct_post_to_sink_ms": summary(floor),
        },
        plot={
            "latency_ms": {
                "event to receiver": [1000 * v for v in latencies],
                "POST /users answer": [1000 * v for v in answers],
                "direct POST to sink": [1000 * v for v in floor],
            }
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
