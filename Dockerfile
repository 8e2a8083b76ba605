# The pipeline image for Vertex AI: every component's container, the Vertex AI Training job
# (Trainer) and the Dataflow workers (--sdk_container_image) all run it, so user code
# (modules/, referenced by module path) and the curated schema are baked in: compiling the
# pipeline uploads nothing.
#
#   docker build --target pipeline -t REGION-docker.pkg.dev/PROJECT/REPO/taxi-pipeline:TAG .
#   docker build --target serving  -t REGION-docker.pkg.dev/PROJECT/REPO/taxi-serving:TAG .
#   docker push ... (both)
FROM gcr.io/tfx-oss-public/tfx:1.16.0 AS pipeline

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

# The Vertex AI endpoint's serving container: this project's server (the same contract as
# `runner.py serve`), configured by the AIP_* variables Vertex sets (serving/vertex.py).
FROM pipeline AS serving
ENTRYPOINT ["python", "-m", "serving.vertex"]
