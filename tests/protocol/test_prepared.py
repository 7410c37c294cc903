"""ResponseQueue: matching a tracked link's server replies to the requests that earn them."""

from __future__ import annotations

from pgmux.protocol.prepared import Entry, ResponseQueue

E, S, P, B = ord("E"), ord("S"), ord("P"), ord("B")


def _queue(*kinds: int) -> ResponseQueue:
    queue = ResponseQueue()
    for kind in kinds:
        queue.expect(Entry(kind))
    return queue


def test_forget_syncs_drops_the_first_ones_behind_the_copy() -> None:
    queue = _queue(E, S, P, B, E, S)
    queue.forget_syncs(1)
    assert [e.kind for e in queue.entries] == [E, P, B, E, S]
    queue.forget_syncs(0)
    assert len(queue.entries) == 5


def test_an_extended_copy_empties_the_queue_once_its_syncs_are_forgotten() -> None:
    # Execute of COPY FROM STDIN, the Sync libpq sends behind it, then (after CopyDone) another.
    queue = _queue(E, S)
    assert queue.on_reply(ord("G"))  # CopyInResponse: the Execute is not done yet
    queue.forget_syncs(1)  # the server ignores that Sync in copy-in mode
    queue.expect(Entry(S))  # the Sync after CopyDone
    for reply in b"CZ":  # CommandComplete ends the Execute, ReadyForQuery the Sync
        assert queue.on_reply(reply)
    assert not queue
