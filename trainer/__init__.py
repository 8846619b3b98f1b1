"""The training program: dataset dir in, checkpoints, TensorBoard logs and an export dir out.

`python -m trainer.task` (`sandwich-train`) trains the sandwich under a
`tf.distribute` strategy with a custom loop; `python -m trainer.submit`
(`sandwich-submit`) sends the same program to Vertex AI. Modules: `config`
(what a run is asked, without TensorFlow), `data` (tf.data input from the
dataset dir), `strategy` (which strategy, which worker writes), `training`
(the loop, checkpoints, progress), `time_budget` (`--max_train_minutes`
across resumes), `summaries` (TensorBoard records), `patch_evaluation` (the
real codec on the eval split's patches; for whole files, header included,
see `pipelines.evaluate`), `export` (SavedModels and the model spec).
"""
from sandwich import logs as _logs

_logs.quiet_native_logs()  # before any trainer module imports TensorFlow
