"""Which shard of an index a document lives on, computed the way Elasticsearch computes it.

The shard is `floorMod(murmur3(routing), routing_num_shards) / routing_factor`, where the
routing is the `routing` parameter or else the document id, hashed as UTF-16 code units with
32-bit murmur3 (x86, seed 0). An index created without `number_of_routing_shards` gets the
largest `shards * 2^n` that stays within 1024 (at least one split), as ES 7+ chooses it. So a
document indexed with a routing is found only with that routing (or one on the same shard),
as on a real cluster.
"""

from __future__ import annotations

_C1, _C2, _MASK = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF


def _rotl(value: int, count: int) -> int:
    return ((value << count) | (value >> (32 - count))) & _MASK


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit, as a signed 32-bit integer (Java's `int`)."""
    h = seed & _MASK
    blocks = len(data) // 4
    for n in range(blocks):
        k = int.from_bytes(data[4 * n : 4 * n + 4], "little")
        k = _rotl((k * _C1) & _MASK, 15) * _C2 & _MASK
        h = (_rotl(h ^ k, 13) * 5 + 0xE6546B64) & _MASK
    tail = data[4 * blocks :]
    if tail:
        k = int.from_bytes(tail, "little")
        h ^= _rotl((k * _C1) & _MASK, 15) * _C2 & _MASK
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h - (1 << 32) if h & 0x80000000 else h


def routing_hash(routing: str) -> int:
    """ES's hash of a routing value: each UTF-16 code unit as two little-endian bytes."""
    return murmur3_x86_32(routing.encode("utf-16-le"))


def default_routing_shards(shards: int) -> int:
    """`number_of_routing_shards` when the index does not set it."""
    log2_shards = (shards - 1).bit_length()  # ceil(log2(shards))
    return shards << max(1, 10 - log2_shards)


def shard_of(routing: str, shards: int, routing_shards: int) -> int:
    """The shard a routing value (or a document id) goes to."""
    return (routing_hash(routing) % routing_shards) // (routing_shards // shards)
