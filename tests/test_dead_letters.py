"""TryFlatMap: rejections become counted dead letters, on the bundle's thread or a pool's."""
import apache_beam as beam
import pytest
from apache_beam.metrics import MetricsFilter
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from pipelines.beam_options import pipeline_options
from pipelines.dead_letters import METRICS_NAMESPACE, DeadLetter, Rejected, TryFlatMap


def _reject_odd(n):
    if n % 2:
        raise Rejected(f"{n} is odd")
    yield n * 10


@pytest.mark.parametrize("threads", [0, 2])
def test_try_flat_map_sends_rejections_to_counted_dead_letters(threads):
    pipeline = test_pipeline.TestPipeline(options=pipeline_options(
        ["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
    kept, dead = (pipeline | beam.Create(list(range(1, 41)))
                  | TryFlatMap(_reject_odd, step="parity", path_of=lambda n: f"file{n}",
                               threads=threads))
    assert_that(kept, equal_to([n * 10 for n in range(2, 41, 2)]), label="Kept")
    assert_that(dead, equal_to([DeadLetter(f"file{n}", f"{n} is odd", "parity")
                                for n in range(1, 41, 2)]), label="Dead")
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    assert {c.key.metric.name: c.committed for c in counters} == {"total": 20, "parity": 20}


def test_try_flat_map_on_threads_keeps_each_element_in_its_window():
    """Results leave after later elements arrive, or at the bundle's end,
    still with their own element's timestamp and window."""
    pipeline = test_pipeline.TestPipeline(options=pipeline_options(
        ["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
    kept, dead = (pipeline
                  | beam.Create(list(range(1, 31)))
                  | beam.Map(lambda n: window.TimestampedValue(n, n))
                  | beam.WindowInto(window.FixedWindows(10))
                  | TryFlatMap(_reject_odd, step="parity", path_of=lambda n: f"file{n}",
                               threads=2))

    def placed(value, timestamp=beam.DoFn.TimestampParam, win=beam.DoFn.WindowParam):
        return value, int(timestamp), int(win.start)

    assert_that(kept | "PlaceKept" >> beam.Map(placed),
                equal_to([(n * 10, n, n // 10 * 10) for n in range(2, 31, 2)]), label="Kept")
    assert_that(dead | "PlaceDead" >> beam.Map(lambda d, t=beam.DoFn.TimestampParam: (
        d.path, int(t))), equal_to([(f"file{n}", n) for n in range(1, 31, 2)]), label="Dead")
    pipeline.run().wait_until_finish()


def _fail_on_seven(n):
    if n == 7:
        raise ValueError("a bug, not bad input")
    yield n


def test_try_flat_map_on_threads_fails_the_job_on_errors_it_was_not_told_of():
    pipeline = test_pipeline.TestPipeline(options=pipeline_options(
        ["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
    _ = (pipeline | beam.Create(list(range(10)))
         | TryFlatMap(_fail_on_seven, step="seven", path_of=str, threads=2))
    with pytest.raises(Exception, match="a bug, not bad input"):
        pipeline.run().wait_until_finish()
