# A Dataflow SDK container with the package installed: workers start with
# TensorFlow and the jobs' code in place instead of building `--setup_file`'s
# sdist and installing TensorFlow on every worker at start-up. The base image's
# Python and Beam must be the ones setup.py requires (tests/test_containers.py).
#
#   docker build -f docker/dataflow.Dockerfile -t REGION-docker.pkg.dev/PROJECT/sandwich/dataflow:VERSION .
#   sandwich-compress ... --runner DataflowRunner --sdk_container_image IMAGE --sdk_location container
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/sandwich
COPY setup.py ./
COPY sandwich sandwich
COPY codec codec
COPY pipelines pipelines
COPY trainer trainer
RUN pip install --no-cache-dir .

# The base image's ENTRYPOINT (Beam's boot program) stays.
