"""The user code each component runs, and its digest.

The digest is compiled into the Transform and Trainer configuration (so a code change
invalidates their cached outputs) and checked again where the code runs: on Vertex AI the
spec is compiled from a checkout but runs the code baked into the image, and a spec whose
digest is not the image's would reuse cached outputs of other code. It fails instead.
"""

from __future__ import annotations

import hashlib
import pathlib

# A change to a file re-runs only the components that depend on it (editing model.py re-runs
# the Trainer, not Transform).
TRANSFORM_CODE = ("features.py", "preprocessing.py")
TRAINER_CODE = ("features.py", "contract.py", "hparams.py", "model.py", "trainer.py")
TUNER_CODE = (*TRAINER_CODE, "tuning.py", "vizier.py")

HERE = pathlib.Path(__file__).parent


def fingerprint(files: tuple[str, ...], root: str | None = None) -> str:
    """Digest of these files under modules/ (or `root`)."""
    folder = pathlib.Path(root) if root else HERE
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode())
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


class CodeMismatch(RuntimeError):
    pass


def check(expected: str | None, files: tuple[str, ...]) -> None:
    """Raises when the code that runs is not the code the pipeline was compiled from."""
    if not expected:
        return
    running = fingerprint(files)
    if running != expected:
        raise CodeMismatch(
            f"the pipeline was compiled from modules@{expected} but this image runs modules@{running} "
            f"({', '.join(files)} differ): rebuild and push the image from the checkout you compile, or recompile"
        )
