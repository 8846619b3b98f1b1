"""Apache Beam jobs of the sandwiched-compression system.

`make_dataset` turns image corpora into scenario datasets (TFRecords in the
TensorFlow Datasets layout plus `dataset_spec.json`). The small modules beside
it are shared by every job: `beam_options` (the default runner configuration),
`dead_letters` (routing bad input to a JSON-lines output, counted), and
`tfds_writer` (deterministic sharded TFRecords and TFDS metadata through
Beam's filesystems, so `gs://` works everywhere).
"""
