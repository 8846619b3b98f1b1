"""Apache Beam jobs of the sandwiched-compression system.

Each job is a `python -m pipelines.<job>` module with `run(argv)` and `main()`;
`make_dataset` turns image corpora into scenario datasets (TFRecords in the
TensorFlow Datasets layout plus `dataset_spec.json`) and `sample_data` makes
the small synthetic high-bit-depth corpus. The modules every job shares:
`beam_options` (the default runner configuration), `dead_letters` (routing
bad input to a counted JSON-lines output), `tfds_writer` (deterministic
TFRecord shards and TFDS metadata through Beam's filesystems, so `gs://`
works everywhere) and `patches` (splits, crop positions, bit-depth fitting).
"""
from sandwich import logs as _logs

_logs.quiet_native_logs()  # before any job module imports TensorFlow
