"""The pipeline image, built the way the Dockerfile builds it, without Docker.

The Dockerfile's `pipeline` stage is read and replayed into a folder: WORKDIR, COPY and ENV as
written, and the RUN that installs this project (`pip install --no-deps .`) run as written,
into a virtualenv of its own. Its Python sees the pinned third-party set of the development
venv (the `pip install -r requirements.lock` layer) but not the checkout: the development
venv's editable install is a .pth file that this venv never processes. A module that only
imports from the repository fails here as it would in the image.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import sysconfig

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@dataclasses.dataclass(frozen=True)
class Image:
    root: pathlib.Path  # the image's filesystem root
    workdir: pathlib.Path  # WORKDIR, under root
    python: pathlib.Path  # the image's python (a venv)
    env: dict[str, str]  # ENV lines

    def path(self, image_path: str) -> str:
        """Where an absolute path inside the image is in this folder."""
        return str(self.root / image_path.lstrip("/"))

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(base if base is not None else os.environ)
        for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(key, None)
        env.update(self.env)
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        return env


def stage(name: str, dockerfile: pathlib.Path = DOCKERFILE) -> list[tuple[str, str]]:
    """The (instruction, arguments) of one build stage, continuation lines joined."""
    lines: list[str] = []
    for raw in dockerfile.read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + raw.strip()
        else:
            lines.append(raw.strip())
    steps: list[tuple[str, str]] = []
    current = None
    for line in lines:
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else None
            continue
        if current == name:
            steps.append((instruction.upper(), rest.strip()))
    if not steps:
        raise ValueError(f"{dockerfile}: no stage {name!r}")
    return steps


def build(root: pathlib.Path, base_python: str = sys.executable, uv: str | None = None) -> Image:
    """Replays the Dockerfile's `pipeline` stage into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    venv = root / "venv"
    uv = uv or str(REPO / ".tools" / "uv" / "bin" / "uv")
    subprocess.run([uv, "venv", "--quiet", "--seed", "--python", base_python, str(venv)], check=True)
    # The pinned third-party set: the development venv's site-packages, as a plain path (its
    # .pth files, the editable install among them, are not processed).
    purelib = sysconfig.get_paths()["purelib"]
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "pinned_set.pth").write_text(purelib + "\n")
    python = venv / "bin" / "python"

    workdir = root
    env: dict[str, str] = {}
    image = Image(root=root, workdir=workdir, python=python, env=env)
    for instruction, args in stage("pipeline"):
        if instruction == "WORKDIR":
            workdir = root / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, dest = shlex.split(args)
            target = (workdir / dest) if not dest.startswith("/") else root / dest.lstrip("/")
            for src in sources:
                path = REPO / src
                if path.is_dir():
                    shutil.copytree(
                        path,
                        target if len(sources) == 1 and not dest.endswith("/") else target / src,
                        ignore=shutil.ignore_patterns("__pycache__"),
                        dirs_exist_ok=True,
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True) if dest.endswith("/") else None
                    shutil.copy2(path, target / path.name if dest.endswith("/") else target)
        elif instruction == "ENV":
            key, _, value = args.partition("=")
            env[key.strip()] = value.strip()
        elif instruction == "RUN":
            if "-r requirements.lock" in args:
                continue  # the pinned set: provided by pinned_set.pth above
            run_env = Image(root, workdir, python, env).environ()
            # No network and no build isolation: setuptools comes from the pinned set.
            run_env["PIP_NO_BUILD_ISOLATION"] = "1"
            run_env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
            subprocess.run(["bash", "-c", args], cwd=workdir, env=run_env, check=True, stdout=subprocess.DEVNULL)
        # ENTRYPOINT/CMD of the base image are not used by the pipeline's tasks (they run
        # their spec's command).
    return dataclasses.replace(image, workdir=workdir, env=env)
