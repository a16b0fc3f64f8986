"""Durable per-partition checkpoints of the detector: next offset + patient snapshots, in Redis.

A checkpoint is written only after every output of the messages before its
offset is durable (Kafka acknowledged, Redis written), then the offset is
committed to Kafka.  A restarted or re-assigned consumer restores the
snapshots and seeks to the checkpoint's offset, so it recomputes exactly the
outputs that may have been lost; their deterministic ids make the stores drop
the ones that were not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from stream.redis import reply

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int
    patients: dict[str, bytes]


class CheckpointStore:
    """``{prefix}:ckpt:{group}:{topic}:{partition}`` hashes: ``offset`` and ``p:<patient>``."""

    def __init__(self, client: aioredis.Redis, prefix: str, group: str) -> None:
        self.client = client
        self.prefix = prefix
        self.group = group

    def _key(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:ckpt:{self.group}:{topic}:{partition}"

    async def save(self, topic: str, partition: int, cp: Checkpoint) -> None:
        key = self._key(topic, partition)
        mapping: dict[str, bytes | str] = {"offset": str(cp.offset)}
        mapping.update({f"p:{pid}": blob for pid, blob in cp.patients.items()})
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)
            await pipe.execute()

    async def load(self, topic: str, partition: int) -> Checkpoint | None:
        raw = await reply(self.client.hgetall(self._key(topic, partition)))
        if not raw:
            return None
        fields: dict[str, bytes] = {
            (k.decode() if isinstance(k, bytes) else str(k)): (v if isinstance(v, bytes) else
                                                               str(v).encode())
            for k, v in raw.items()
        }
        offset = int(fields.pop("offset"))
        patients = {k[2:]: v for k, v in fields.items() if k.startswith("p:")}
        return Checkpoint(offset, patients)
