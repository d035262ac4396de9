"""GroupCommit: writes in submission order, batching whatever arrives while a batch is being written."""

from __future__ import annotations

import asyncio

import pytest

from vigil.storage.group_commit import GroupCommit


class Sink:
    """A writer that can be held (a busy database) and fail on demand."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.go = asyncio.Event()
        self.go.set()
        self.fail_on: set[int] = set()

    async def write(self, batch: list[int]) -> None:
        await self.go.wait()
        if self.fail_on & set(batch):
            raise RuntimeError("disk I/O error")
        self.batches.append(batch)


async def test_idle_writes_go_at_once_and_busy_ones_share_a_batch() -> None:
    sink = Sink()
    commit: GroupCommit[int] = GroupCommit(sink.write, name="test")
    assert await commit.submit([1]) is True
    assert sink.batches == [[1]]
    sink.go.clear()  # the database is busy with the next batch
    first = commit.submit([2])
    await asyncio.sleep(0)  # the writer takes [2] and waits on the database
    waiting = [commit.submit([n]) for n in range(3, 8)]
    assert commit.pending == 5
    sink.go.set()
    assert await first is True and all([await w for w in waiting])
    assert sink.batches == [[1], [2], [3, 4, 5, 6, 7]]
    assert (commit.batches, commit.items) == (3, 7)
    await commit.close()


async def test_a_failed_batch_reports_false_and_later_ones_are_still_written(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    sink.fail_on = {2}
    commit: GroupCommit[int] = GroupCommit(sink.write, name="test")
    assert await commit.submit([2, 3]) is False
    assert "writing a batch of 2 failed" in caplog.text
    assert await commit.submit([4]) is True
    assert sink.batches == [[4]]
    await commit.close()


async def test_close_writes_what_is_queued_and_refuses_more() -> None:
    sink = Sink()
    commit: GroupCommit[int] = GroupCommit(sink.write, name="test")
    sink.go.clear()
    commit.submit([1])
    commit.submit([2])
    closing = asyncio.create_task(commit.close())
    await asyncio.sleep(0)
    sink.go.set()
    await closing
    assert [n for batch in sink.batches for n in batch] == [1, 2]
    assert await commit.flush() is True
    with pytest.raises(RuntimeError, match="after close"):
        commit.submit([3])
