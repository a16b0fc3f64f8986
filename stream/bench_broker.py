"""CPU of the bundled broker over time under a steady load: ``python -m stream.bench_broker``.

Starts the local broker (Tansu, memory storage, as ``ecgmon bench`` and the tests do),
produces ``--rate`` records a second of ``--size`` bytes in bursts of ``--burst`` records
(as a thousand staggered bedside monitors send them: nearly every record is
its own batch) and, unless ``--no-consume``, reads them back as fast as they come. It
prints the broker's CPU every ``--every`` seconds.  This is how BENCHMARKS.md shows that
the bundled broker's fetch cost grows with the batches it holds (memory storage keeps
everything: ``retention.ms`` is not applied and DeleteRecords closes the connection), so
any long real-time run on it ends up limited by the broker, not by ecgmon.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.services import start_broker

TOPIC = "bench-broker"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run(seconds: float, rate: int, size: int, burst: int, partitions: int,
              linger_ms: int, fetch_max_wait_ms: int, consume: bool, every_s: float,
              say: Callable[[str], None] = _say) -> list[tuple[float, float]]:
    """(elapsed s, broker CPU %) every ``every_s``."""
    broker = start_broker()
    samples: list[tuple[float, float]] = []
    try:
        proc = psutil.Process(broker.proc.pid)
        boot = f"127.0.0.1:{broker.port}"
        admin = AIOKafkaAdminClient(bootstrap_servers=boot)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(TOPIC, partitions, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=linger_ms,
                                    enable_idempotence=False)
        await producer.start()
        consumer = None
        reader = None
        received = 0
        if consume:
            consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=boot, group_id=None,
                                        auto_offset_reset="earliest",
                                        fetch_max_wait_ms=fetch_max_wait_ms)
            await consumer.start()

            async def read(c: AIOKafkaConsumer) -> None:
                nonlocal received
                while True:
                    batch = await c.getmany(timeout_ms=100, max_records=10_000)
                    received += sum(len(r) for r in batch.values())

            reader = asyncio.create_task(read(consumer))
        payload = b"\x00" * size
        t0 = time.monotonic()
        last_t, last_cpu = t0, sum(proc.cpu_times()[:2])
        sent = 0
        try:
            while (now := time.monotonic()) - t0 < seconds:
                for _ in range(burst):
                    await producer.send(TOPIC, payload, key=str(sent % 1000).encode())
                    sent += 1
                # keep to the rate on average, one burst at a time
                ahead = t0 + sent / rate - time.monotonic()
                await asyncio.sleep(max(0.0, ahead))
                if now - last_t >= every_s:
                    cpu = sum(proc.cpu_times()[:2])
                    pct = 100 * (cpu - last_cpu) / (now - last_t)
                    samples.append((now - t0, pct))
                    say(f"{now - t0:6.1f} s  broker CPU {pct:5.1f} %  records sent {sent:,}"
                        + (f"  read {received:,}" if consume else ""))
                    last_t, last_cpu = now, cpu
        finally:
            if reader is not None:
                reader.cancel()
            await producer.stop()
            if consumer is not None:
                await consumer.stop()
    finally:
        broker.stop()
    return samples


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m stream.bench_broker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rate", type=int, default=1000, help="records per second")
    p.add_argument("--size", type=int, default=1500, help="bytes per record (a 1 s 2-lead chunk)")
    p.add_argument("--burst", type=int, default=5, help="records sent together")
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--linger-ms", type=int, default=5)
    p.add_argument("--fetch-max-wait-ms", type=int, default=50)
    p.add_argument("--no-consume", dest="consume", action="store_false",
                   help="produce only (the broker's CPU stays flat then)")
    p.add_argument("--every", type=float, default=5.0, help="seconds between CPU readings")
    a = p.parse_args(argv)
    samples = asyncio.run(run(a.seconds, a.rate, a.size, a.burst, a.partitions, a.linger_ms,
                              a.fetch_max_wait_ms, a.consume, a.every))
    if len(samples) >= 2:
        (t_a, c_a), (t_b, c_b) = samples[0], samples[-1]
        _say(f"broker CPU {c_a:.1f} % at {t_a:.0f} s -> {c_b:.1f} % at {t_b:.0f} s "
             f"({(c_b - c_a) / (t_b - t_a) * 60:+.1f} points per minute)")


if __name__ == "__main__":
    main()
