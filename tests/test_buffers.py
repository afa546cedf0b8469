import threading

import numpy as np

from emodesk.capture.buffers import AudioRing, LatestSlot


def test_latest_slot_keeps_newest_and_counts_drops():
    s: LatestSlot[int] = LatestSlot()
    for i in range(5):
        s.put(i)
    assert s.take(timeout=0) == 4
    assert s.dropped == 4
    assert s.take(timeout=0.01) is None  # nothing new
    assert s.peek() == 4


def test_latest_slot_wakes_consumer_and_close_unblocks():
    s: LatestSlot[str] = LatestSlot()
    got = []
    t = threading.Thread(target=lambda: got.append(s.take(timeout=5)))
    t.start()
    s.put("frame")
    t.join(2)
    assert got == ["frame"]
    t2 = threading.Thread(target=lambda: got.append(s.take(timeout=5)))
    t2.start()
    s.close()
    t2.join(2)
    assert not t2.is_alive() and got[-1] is None


def test_audio_ring_preserves_order_across_wraparound():
    r = AudioRing(100)
    x = np.arange(250, dtype=np.float32)
    out = []
    for i in range(0, 250, 30):
        r.write(x[i : i + 30])
        out.append(r.read(max_samples=17, timeout=0))
        out.append(r.read(timeout=0))
    assert np.array_equal(np.concatenate(out), x)
    assert r.overflowed == 0 and r.total_read == 250


def test_audio_ring_overflow_drops_oldest_and_counts():
    r = AudioRing(100)
    r.write(np.arange(80, dtype=np.float32))
    r.write(np.arange(80, 150, dtype=np.float32))
    assert r.overflowed == 50 and r.overflow_events == 1
    got = r.read()
    assert np.array_equal(got, np.arange(50, 150, dtype=np.float32))
    assert r.total_read == 150  # skipped samples count, so media time stays right
    r.write(np.arange(500, dtype=np.float32))  # bigger than the ring at once
    assert np.array_equal(r.read(), np.arange(400, 500, dtype=np.float32))
