"""The write path: the durable journal, its applier, the write API and the read overlay.

Handlers never call a store's write methods directly: every mutation goes through a
``Writer`` (``writer.py``). With the journal (the default) a write is:

1. appended to the journal and fsync'd (group commit, ``log.py``) — from here on it survives
   any crash, so it can be acknowledged;
2. applied to the store by one applier task (``queue.py``), strictly in journal order.
   Consecutive writes of the same kind are applied as one store call (many upserts → one
   upsert), so ordering does not cost throughput. A write that arrives while older ones are
   still waiting queues behind them: a delete queued after a save of the same id wins;
3. reported applied, after which whole journal segments are trimmed.

The writer waits for step 2 until its request's write deadline. If the store is unreachable
(or the deadline passes first) the reply is ``queued: true``; the applier keeps retrying, with
backoff, in order, until the store takes the writes. Only a write the store *rejects* (a bug,
a dimension changed behind memoryd's back) is answered with that error and dropped.

Readers read a ``JournaledView`` (``view.py``): lookups by id see queued writes.

A write whose id depends on what the store holds (a conversation at the first free probe id,
CONTRACT §5) can be journaled as ``upsert_probed`` when the store cannot be read: it carries
its candidate ids and the ownership rule, and the applier picks the id when it applies it
(the store is up then, and every earlier write is in it). Such an entry is applied alone.

Entries carry their collection name: one journal serves every collection (``attach`` each
collection's store).

Modules: ``log.py`` (on-disk format, group commit), ``entry.py`` (what a journaled write is
and how it is applied), ``queue.py`` (WriteQueue: submit, applier, replay), ``writer.py``
(Writer), ``view.py`` (JournaledView).
"""

from __future__ import annotations

from sidecar.journal.queue import WriteQueue
from sidecar.journal.view import JournaledView
from sidecar.journal.writer import Writer
from sidecar.store.base import Store


def attach(collection: str, store: Store, queue: WriteQueue | None
           ) -> tuple[JournaledView, Writer]:
    """The read view and the writer of ``collection`` over ``store`` (the store behind
    deadlines and the breaker). With ``queue``, writes to it are journaled and the applier
    applies them to ``store``; without, they go straight to ``store``."""
    if queue is not None:
        queue.register(collection, store)
    return JournaledView(store, queue, collection), Writer(store, queue, collection)
