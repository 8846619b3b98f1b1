"""The whole round trip through `gs://`, against a Cloud Storage emulator on 127.0.0.1.

Sources, the export dir, bottlenecks, manifest, dead letters and PNGs all
live in the emulated bucket, so every read and write goes through Beam's GCS
filesystem as on Dataflow (the model is copied to the worker through it,
since `tf.saved_model.load` cannot reach an emulator). Results are downloaded
with the storage client and checked against the same jobs' local numbers.
"""
import contextlib
import io
import json
import os

import numpy as np
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from codec import exported
from pipelines import batch_jobs, compress, decompress, evaluate, sample_data
from sandwich import metrics
from sandwich.image_io import decode_image
from tests.sandwich_exports import export_sandwich

PHOTOS = {"astronaut.png": "astronaut.png", "nested/rocket.png": "rocket.png"}
QSTEP = 12
TILING = ["--tile=128", "--halo=32"]
# Compression on two worker processes, as the jobs run by default: they must
# reach the emulator and fetch the model from it on their own.
WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _upload_dir(bucket, local: str, prefix: str) -> None:
    for root, _, files in os.walk(local):
        for name in files:
            path = os.path.join(root, name)
            bucket.blob(f"{prefix}/{os.path.relpath(path, local)}").upload_from_filename(path)


def test_round_trip_through_gcs(gcs_emulator):
    bucket = gcs_emulator.create_bucket("sandwich")
    for name, photo in PHOTOS.items():
        bucket.blob(f"photos/{name}").upload_from_filename(
            os.path.join(sample_data.SAMPLES_DIR, photo))
    bucket.blob("photos/garbage.png").upload_from_string(b"\x89PNG\r\n\x1a\n garbage")
    local_model = export_sandwich("high_res", model_id="hr-perturbed", perturb=0.02, seed=1)
    _upload_dir(bucket, local_model, "models/hr")

    with contextlib.redirect_stdout(io.StringIO()):
        compressed = compress.run([
            "--input=gs://sandwich/photos/**", "--output=gs://sandwich/bits",
            "--model=gs://sandwich/models/hr", f"--qstep={QSTEP}", *TILING, *WORKERS])
        # The directory of export dirs: a model set, found through GCS too.
        decompressed = decompress.run([
            "--input=gs://sandwich/bits/**.jpg", "--output=gs://sandwich/restored",
            "--model=gs://sandwich/models", *TILING, *IN_PROCESS])

    assert (compressed["written"], compressed["dead_letters"]) == (2, 1)
    assert (decompressed["inputs"], decompressed["written"]) == (2, 2)
    names = {b.name for b in gcs_emulator.list_blobs("sandwich")}
    assert {"bits/astronaut.png.jpg", "bits/nested/rocket.png.jpg", "bits/manifest.jsonl",
            "restored/astronaut.png", "restored/nested/rocket.png"} <= names
    assert not [n for n in names if "/." in n or "beam-temp" in n], "temporary files left"
    [letter] = [json.loads(line) for line in
                bucket.blob("bits/dead_letters.jsonl").download_as_text().splitlines()]
    assert letter["path"] == "gs://sandwich/photos/garbage.png"

    manifest = {json.loads(line)["source"]: json.loads(line) for line in
                bucket.blob("bits/manifest.jsonl").download_as_text().splitlines()}
    model = exported.ExportedSandwich.load(local_model, tile=128, halo=32)
    for name, photo in PHOTOS.items():
        # Decoded as the jobs decode it (rocket's Adobe RGB profile converted to sRGB).
        with open(os.path.join(sample_data.SAMPLES_DIR, photo), "rb") as f:
            source = decode_image(f.read()).pixels
        data = bucket.blob(f"bits/{name}.jpg").download_as_bytes()
        restored = np.asarray(Image.open(io.BytesIO(
            bucket.blob(f"restored/{name}").download_as_bytes())))
        assert restored.shape == source.shape
        record = manifest[f"gs://sandwich/photos/{name}"]
        assert record["bytes"] == len(data) and record["model_id"] == "hr-perturbed"
        path = f"gs://sandwich/photos/{name}"
        stamp = batch_jobs.source_stamp(FileSystems.get_filesystem(path).metadata(path))
        [(bits, psnr)] = evaluate.measure_sandwich(model, source, 8, [QSTEP], stamp)
        assert bits == 8 * len(data)
        assert metrics.psnr(restored[None], source[None])[0] == psnr
