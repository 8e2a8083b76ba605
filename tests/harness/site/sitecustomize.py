"""Installed into the pipeline tasks' Python by the offline launcher (tests/harness): fakes
Google's Vertex AI APIs at their client boundary when FAKE_VERTEX_DIR is set."""

import os

if os.environ.get("FAKE_VERTEX_DIR"):
    import fake_vertex

    fake_vertex.install(os.environ["FAKE_VERTEX_DIR"])
