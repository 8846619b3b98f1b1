"""Property-based fuzzing of the untrusted-input boundaries (see `tests.fuzz_targets`).

A bounded number of examples per target, derandomised so that CI sees the
same inputs every run; `benchmarks/fuzz_campaign.py` runs the long campaign.
Each target's `run` asserts the contract on every example (and raises on
anything it forbids); each test also checks that its examples reach both
outcomes, a decoded input and a rejected one, so that neither side of the
contract goes untested (a decoder that rejected everything, or accepted
everything, would fail here).
"""
import collections
import tempfile

from hypothesis import HealthCheck, given, settings

from tests import fuzz_targets

EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BOTH = {fuzz_targets.DECODED, fuzz_targets.REJECTED}


def _outcomes(strategy, run) -> collections.Counter:
    """How often `run` gave each outcome over the examples of `strategy`."""
    seen = collections.Counter()

    @EXAMPLES
    @given(strategy)
    def each(example):
        seen[run(example)] += 1

    each()
    return seen


def test_decode_image_decodes_or_rejects_with_a_reason():
    outcomes = _outcomes(fuzz_targets.mutated_images(), fuzz_targets.run_decode)
    assert set(outcomes) == BOTH, outcomes


def test_bottleneck_header_parses_in_bounds_or_rejects_with_a_reason():
    outcomes = _outcomes(fuzz_targets.header_comments(), fuzz_targets.run_header)
    assert set(outcomes) == BOTH, outcomes


def _written_inside(name: str) -> str:
    with tempfile.TemporaryDirectory() as root:
        outcome = fuzz_targets.run_output_name(name, root)
        assert fuzz_targets.writes_outside(root) == [], name
    return outcome


def test_no_input_name_writes_outside_the_output():
    outcomes = _outcomes(fuzz_targets.input_names(), _written_inside)
    assert set(outcomes) == BOTH, outcomes


def test_the_seeds_decode():
    """The mutations start from files the decoder takes, or they prove little."""
    for data in fuzz_targets.seeds().values():
        assert fuzz_targets.run_decode(data) == fuzz_targets.DECODED
