"""Rendezvous (highest random weight) hashing: which shard takes a host.

Every host ranks every shard by a hash of the pair (host, shard) and takes the
highest.  A host's choice depends only on its own name and the shard names, so
it is the same in every process that shards the same way, and adding a shard
moves exactly the hosts that now rank it first (about 1/n of them); removing
one moves only its own hosts.  The ranking's next entries are the host's
secondaries, in order.
"""

import hashlib
from typing import List, Sequence

__all__ = ["ranking", "owner"]


def _weight(host: bytes, shard: str) -> bytes:
    return hashlib.blake2b(host + b"\0" + shard.encode("utf8"), digest_size=8).digest()


def ranking(host: str, shards: Sequence[str]) -> List[int]:
    """Indexes of ``shards`` in ``host``'s order of preference (first: its owner)."""
    key = host.encode("utf8", "surrogateescape")
    weights = [_weight(key, shard) for shard in shards]
    return sorted(range(len(shards)), key=lambda i: (weights[i], shards[i]), reverse=True)


def owner(host: str, shards: Sequence[str]) -> int:
    """Index of the shard that takes ``host``."""
    key = host.encode("utf8", "surrogateescape")
    return max(range(len(shards)), key=lambda i: (_weight(key, shards[i]), shards[i]))
