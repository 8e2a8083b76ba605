# The pipeline image for Vertex AI: every component's container, the Vertex AI Training job
# (Trainer) and the Dataflow workers (--sdk_container_image) all run it, so user code
# (modules/, referenced by module path) and the curated schema are baked in: compiling the
# pipeline uploads nothing.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/taxi-pipeline:TAG .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/taxi-pipeline:TAG
FROM gcr.io/tfx-oss-public/tfx:1.16.0

WORKDIR /pipeline
# The same pinned set as local runs: identical TF, TFT and Beam versions on both sides.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml setup.cfg README.md runner.py ./
COPY modules ./modules
COPY pipeline ./pipeline
COPY runners ./runners
COPY ops ./ops
COPY serving ./serving
COPY schemas ./schemas
RUN pip install --no-cache-dir --no-deps . && python -c "import modules.preprocessing, modules.trainer"

# TFX 1.16's Keras code paths need Keras 2 (tf_keras); TF 2.16's tf.keras is Keras 3.
ENV TF_USE_LEGACY_KERAS=1
# The TFX image's entrypoint (the Beam SDK harness boot) is kept: Dataflow workers need it.
