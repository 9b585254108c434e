"""The chain of causes every error boundary walks: each exception once, loops included."""

from __future__ import annotations

from contract.errors import causes


def test_causes_follow_cause_then_context_and_stop_at_a_loop():
    inner, middle, outer = ConnectionError("refused"), RuntimeError("wrapped"), ValueError("top")
    middle.__cause__ = inner
    outer.__context__ = middle
    inner.__context__ = outer  # a library that re-raised inside its own handler: a loop
    assert list(causes(outer)) == [outer, middle, inner]
    assert list(causes(inner)) == [inner, outer, middle]


def test_a_lone_exception_is_its_own_chain():
    exc = OSError("disk")
    assert list(causes(exc)) == [exc]
