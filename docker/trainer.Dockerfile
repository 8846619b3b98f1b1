# The Vertex AI training container: `sandwich-train` on the Python that
# setup.py requires, with the TensorFlow that setup.py pins. Vertex AI's
# prebuilt TensorFlow images are older than both, so the package brings its own.
#
#   docker build -f docker/trainer.Dockerfile -t REGION-docker.pkg.dev/PROJECT/sandwich/trainer:VERSION .
#   docker build -f docker/trainer.Dockerfile --build-arg EXTRAS=cuda \
#       -t REGION-docker.pkg.dev/PROJECT/sandwich/trainer-gpu:VERSION .
#
# (VERSION: sandwich.__version__; `sandwich-submit` runs these tags by default.)
FROM python:3.11-slim

# `cuda` adds the CUDA and cuDNN wheels TensorFlow runs GPUs with.
ARG EXTRAS=""
WORKDIR /opt/sandwich
COPY setup.py ./
COPY sandwich sandwich
COPY codec codec
COPY pipelines pipelines
COPY trainer trainer
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"

ENTRYPOINT ["sandwich-train"]
