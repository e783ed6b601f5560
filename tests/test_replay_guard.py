"""The replay guard's memory (pure): what it remembers, for how long, and its bound."""
from ocs_core.router.replay_guard import NonceMemory


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_remembers_accepted_nonces_for_the_memory_span():
    clock = Clock()
    memory = NonceMemory(memory_s=30, limit=1000, clock=clock)
    memory.remember(b"k", b"1")
    assert memory.seen(b"k", b"1") and not memory.seen(b"k", b"2") and not memory.seen(b"other", b"1")
    clock.now = 29.0
    assert memory.seen(b"k", b"1")
    clock.now = 30.5
    assert not memory.seen(b"k", b"1") and len(memory) == 0


def test_is_bounded_forgetting_the_oldest_first():
    memory = NonceMemory(memory_s=30, limit=3, clock=Clock())
    for n in range(5):
        memory.remember(b"k", str(n).encode())
    assert len(memory) == 3 and not memory.seen(b"k", b"0") and memory.seen(b"k", b"4")


def test_accept_refuses_a_pair_within_the_span_only():
    clock = Clock()
    memory = NonceMemory(memory_s=30, limit=1000, clock=clock)
    assert memory.accept(b"k", b"1") and not memory.accept(b"k", b"1") and memory.accept(b"k", b"2")
    clock.now = 31.0
    assert memory.accept(b"k", b"1")
