"""Membership and collectives: a torch.distributed process group joined at a c10d store.

No protocol of our own: rank 0 hosts a ``TCPStore`` (or, under torchrun, its agent does) and
``init_process_group`` builds the group on it. What crosses between replicas is tensors and
bytes in the checkpoint format (loaded with ``weights_only=True``), never pickled objects:
``broadcast_object_list`` and friends pickle, so they are not used.

**Generations.** A group lives as long as its members' learner processes: when one dies, the
others' collectives (or, if it hosted the store, their store reads) fail, their learners exit
and the supervisor starts them again, and they form a new group. Who is in a generation is
``membership.py``'s: the others take seats at rank 0's store in join order (a seat is a
rank), and rank 0 closes the generation once all ``world_size`` sit or ``sync.form_wait_s``
passed with ``sync.min_replicas``. A replica that sits down after the close (one coming
back, one added) waits for the next generation, and its seat tells the members to end this
one (:meth:`lost`). Under torchrun the agent's store outlives the workers; each restart
attempt gets a prefix.

**One protocol per group.** A rolling update (a StatefulSet's default) restarts one replica
at a time on the new version, so a group re-forms with mixed versions. Before any collective
every member announces :data:`SYNC_PROTOCOL` in the store; a group whose members differ does
not form (each leaves with :class:`GroupLostError`, its learner is started again after the
supervisor's backoff, and the group forms once every replica runs one protocol). Collectives
of two protocols would pair the wrong messages: a crash at best, a silently wrong average at
worst.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import PrefixStore, Store

from streamlearn._version import __version__
from streamlearn.checkpoint.format import FORMAT_VERSION, decode, encode
from streamlearn.core.errors import SettingsError
from streamlearn.core.logging import get_logger
from streamlearn.sync.membership import (
    LateForGenerationError,
    NoQuorumError,
    close_generation,
    grown,
    returned,
    take_seat,
)
from streamlearn.sync.settings import SyncSettings

log = get_logger(__name__)

_REJOIN_WAIT_S = 0.5
_BEAT = "sync/beat"  # per rank: heartbeats counted by the learner loop
_PROTOCOL = "sync/protocol"  # per rank: the protocol and version it runs
# Bump when what replicas exchange changes shape: a round's flags, the decisions' shares,
# the engine state that is averaged or broadcast. Replicas of two protocols never form a
# group (module docstring).
# 2: a checkpoint round gathers whether every replica's outputs landed. 3: ranks are seats
# taken at the store, a generation may form short (membership.py), and a round's flags say
# whether a replica asks the generation to end with it (a last round).
SYNC_PROTOCOL = 3


class GroupLostError(RuntimeError):
    """This replica's group lost a member (or its store): the learner exits and rejoins."""


def rendezvous(settings: SyncSettings, env: Mapping[str, str]) -> tuple[str, int, int, int]:
    """(master address, master port, rank, world size): the settings, else torchrun's env."""

    def pick(value: Any, name: str) -> str:
        if value is not None:
            return str(value)
        if name not in env:
            raise SettingsError([f"sync.enabled: set sync.{name.lower()} or {name}"])
        return env[name]

    addr = pick(settings.master_addr, "MASTER_ADDR")
    port = int(pick(settings.master_port, "MASTER_PORT"))
    rank = int(pick(settings.rank, "RANK"))
    world = int(pick(settings.world_size, "WORLD_SIZE"))
    if rank >= world:
        raise SettingsError([f"sync.rank: {rank} must be below the world size {world}"])
    if settings.min_replicas > world:
        raise SettingsError(
            [f"sync.min_replicas: {settings.min_replicas} must be at most the world size {world}"]
        )
    return addr, port, rank, world


def agree_on_protocol(
    store: Store, rank: int, world_size: int, timeout_s: float, protocol: int
) -> None:
    """Announce this replica's protocol in the generation's store and read every member's:
    :class:`GroupLostError` where they differ, or where a member announced none within
    ``timeout_s`` (a version from before the announcement, or a member that died). The
    announcement's shape, ``{"protocol": int, "version": str}``, never changes: it is how
    two versions recognise each other."""
    mine = {"protocol": protocol, "version": __version__}
    store.set(f"{_PROTOCOL}/{rank}", json.dumps(mine))
    keys = [f"{_PROTOCOL}/{r}" for r in range(world_size)]
    try:
        store.wait(keys, timedelta(seconds=timeout_s))
        members = {r: _announcement(r, store.get(key)) for r, key in enumerate(keys)}
    except RuntimeError as exc:  # the store's timeout (DistStoreError) or its host gone
        silent = [r for r, key in enumerate(keys) if not _announced(store, key)]
        raise GroupLostError(
            f"ranks {silent} announced no sync protocol within sync.timeout_s={timeout_s}: a"
            f" streamlearn from before the announcement, or a replica that died ({exc})"
        ) from exc
    if any(m["protocol"] != protocol for m in members.values()):
        log.error("sync_protocol_mismatch", rank=rank, members=members, action="rejoin")
        versions = ", ".join(f"rank {r}: {m['version']}" for r, m in members.items())
        raise GroupLostError(
            f"the replicas run different sync protocols ({versions}): a group forms once"
            " every replica runs one version"
        )


def _announcement(rank: int, raw: bytes) -> dict[str, Any]:
    """A member's announcement, or GroupLostError naming the rank whose one is unreadable."""
    try:
        found = json.loads(raw)
        if isinstance(found, dict) and isinstance(found["protocol"], int):
            return {"protocol": found["protocol"], "version": str(found.get("version"))}
    except (ValueError, KeyError) as exc:
        raise GroupLostError(f"rank {rank}'s sync protocol announcement is unreadable") from exc
    raise GroupLostError(f"rank {rank}'s sync protocol announcement is unreadable")


def _announced(store: Store, key: str) -> bool:
    try:
        return bool(store.check([key]))
    except RuntimeError:  # the store itself is gone: nobody can be told apart
        return False


class Group:
    """This replica's place in the group, and the few collectives the sync needs."""

    def __init__(self, settings: SyncSettings, device: torch.device) -> None:
        addr, port, configured_rank, self.world_max = rendezvous(settings, os.environ)
        self.timeout_s = settings.timeout_s
        # Under torchrun the agent hosts the store at MASTER_PORT; otherwise rank 0 does.
        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        self.hosts = configured_rank == 0
        self.configured_rank = configured_rank
        self.store, self.rank, self.world_size = self._join(settings, addr, port, agent)
        backend = settings.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        self.last_bytes = 0  # of the last broadcast state
        self.device = device if backend == "nccl" else torch.device("cpu")
        agree_on_protocol(self.store, self.rank, self.world_size, self.timeout_s, SYNC_PROTOCOL)
        dist.init_process_group(
            backend,
            store=self.store,
            rank=self.rank,
            world_size=self.world_size,
            timeout=timedelta(seconds=self.timeout_s),
        )
        log.info(
            "sync_joined",
            rank=self.rank,
            world_size=self.world_size,
            world_max=self.world_max,
            backend=backend,
        )

    def _join(
        self, settings: SyncSettings, addr: str, port: int, agent: bool
    ) -> tuple[Store, int, int]:
        """(store, rank, size) of the generation this replica is a member of
        (membership.py): rank 0 closes one; the others sit in one not yet closed."""
        timeout = timedelta(seconds=self.timeout_s)
        deadline = time.monotonic() + settings.form_wait_s + self.timeout_s
        while True:
            store: Store = dist.TCPStore(  # type: ignore[attr-defined]
                addr,
                port,
                is_master=self.hosts and not agent,
                timeout=timeout,
                wait_for_workers=False,
            )
            if agent:
                attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
                store = PrefixStore(f"streamlearn/attempt_{attempt}", store)
            try:
                if self.hosts:
                    size = close_generation(
                        store,
                        self.world_max,
                        settings.min_replicas,
                        settings.form_wait_s,
                        self.timeout_s,
                    )
                    return store, 0, size
                seat = take_seat(store, self.configured_rank, settings.form_wait_s, self.timeout_s)
                return (store, *seat)
            except NoQuorumError as exc:
                raise GroupLostError(str(exc)) from None
            except LateForGenerationError as exc:
                # Its members see this seat and leave; the next generation seats this one.
                log.info("sync_group_stale", why=str(exc), retry_in_s=_REJOIN_WAIT_S)
            del store
            if time.monotonic() >= deadline:
                raise GroupLostError(
                    f"no new group formed within sync.form_wait_s + sync.timeout_s ="
                    f" {settings.form_wait_s + self.timeout_s} s"
                )
            time.sleep(_REJOIN_WAIT_S)

    def lost(self) -> bool:
        """Whether this generation is over: a replica sat down after it closed (one that
        died came back, or one was added)."""
        return grown(self.store, self.world_size)

    def returned(self) -> list[int | None]:
        """Members (by configured rank) that sat down again after the close: they died."""
        return returned(self.store, self.world_size)

    def beat(self) -> list[int]:
        """Count this replica's heartbeat; every replica's count, by rank (0: none yet)."""
        self.store.add(f"{_BEAT}/{self.rank}", 1)
        return [int(self.store.add(f"{_BEAT}/{r}", 0)) for r in range(self.world_size)]

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    # -- collectives -----------------------------------------------------------------------

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over replicas of ``tensor`` (every replica gets it)."""
        moved = tensor.to(self.device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        return moved.to(tensor.device)

    def all_gather_ints(self, values: list[int]) -> list[list[int]]:
        """Each replica's ``values`` (the same length everywhere), by rank."""
        mine = torch.tensor(values, dtype=torch.int64, device=self.device)
        out = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(out, mine)
        return [t.tolist() for t in out]

    def broadcast_state(self, state: dict[str, Any] | None, src: int) -> dict[str, Any]:
        """``src``'s state (checkpoint-format bytes, loaded weights-only) on every replica."""
        data = encode({**state, "format": FORMAT_VERSION}) if self.rank == src and state else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        dist.broadcast(size, src)
        self.last_bytes = int(size.item())
        if int(size.item()) == 0:
            return {}
        buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        if self.rank == src:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buffer, src)
        if self.rank == src:
            return {**(state or {}), "format": FORMAT_VERSION}
        return decode(buffer.cpu().numpy().tobytes())

    def all_gather_json(self, value: Any) -> list[Any]:
        """Each replica's plain-data ``value`` (JSON on the wire), by rank."""
        data = json.dumps(value).encode()
        sizes = [s[0] for s in self.all_gather_ints([len(data)])]
        longest = max(sizes)
        mine = torch.zeros(longest, dtype=torch.uint8, device=self.device)
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        out = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(out, mine)
        return [json.loads(t[:n].cpu().numpy().tobytes()) for t, n in zip(out, sizes, strict=True)]
