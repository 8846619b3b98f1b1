"""Property-based fuzzing of the untrusted-input boundaries (see `tests.fuzz_targets`).

A bounded number of examples per target, derandomised so that CI sees the
same inputs every run; `benchmarks/fuzz_campaign.py` runs the long campaign.
"""
import tempfile

from hypothesis import HealthCheck, given, settings

from tests import fuzz_targets

EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@EXAMPLES
@given(fuzz_targets.mutated_images())
def test_decode_image_decodes_or_rejects_with_a_reason(data):
    assert fuzz_targets.run_decode(data) in (fuzz_targets.DECODED, fuzz_targets.REJECTED)


@EXAMPLES
@given(fuzz_targets.header_comments())
def test_bottleneck_header_parses_in_bounds_or_rejects_with_a_reason(example):
    assert fuzz_targets.run_header(example) in (fuzz_targets.DECODED, fuzz_targets.REJECTED)


@EXAMPLES
@given(fuzz_targets.input_names())
def test_no_input_name_writes_outside_the_output(name):
    with tempfile.TemporaryDirectory() as root:
        outcome = fuzz_targets.run_output_name(name, root)
        assert fuzz_targets.writes_outside(root) == []
    assert outcome in (fuzz_targets.DECODED, fuzz_targets.REJECTED)


def test_the_seeds_decode():
    """The mutations start from files the decoder takes, or they prove little."""
    for data in fuzz_targets.seeds().values():
        assert fuzz_targets.run_decode(data) == fuzz_targets.DECODED
