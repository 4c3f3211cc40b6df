"""Image references mapped to local installations: the process kubelet's stand-in for images.

There is no container runtime here, so an image cannot be pulled or unpacked. Instead a JSON
image map (written by the harness, see e2e/images.json) says, per image repository (and a tag
pattern), which local installation plays that image: a directory `root` (a virtualenv) whose
`bin/` goes first on PATH, plus the image's ENTRYPOINT, CMD, WorkingDir and ENV as the
Dockerfile declares them. The container's command line then follows Kubernetes' rules exactly:

  * `command` set: `command + args` (ENTRYPOINT and CMD ignored);
  * only `args`: `ENTRYPOINT + args`;
  * neither: `ENTRYPOINT + CMD`.

So the manifests the operator and the chart write are the production ones, byte for byte.
Images the map does not name run as "the host image" (host PATH, no entrypoint): the harness's
own test pods use them with an explicit `command`.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvharness.kubelet.envvars import UnsupportedSpec, expand
from kvharness.kubelet.runtime import DEFAULT_PATH

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ImageInstall:
    """One entry of the image map (what `docker image inspect` would tell about the image)."""

    repository: str
    tags: str = "*"
    root: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, doc: JsonDict) -> ImageInstall:
        return cls(
            repository=normalize(str(doc["repository"])),
            tags=str(doc.get("tags", "*")),
            root=str(doc.get("root", "")),
            entrypoint=tuple(doc.get("entrypoint", ())),
            cmd=tuple(doc.get("cmd", ())),
            working_dir=str(doc.get("workingDir", "")),
            env=dict(doc.get("env", {})),
        )

    def environment(self) -> dict[str, str]:
        """The image's ENV, with `root/bin` first on PATH when the image names a root."""
        env = dict(self.env)
        if self.root and "PATH" not in env:
            env["PATH"] = f"{self.root}/bin:{DEFAULT_PATH}"
        return env


HOST_IMAGE = ImageInstall(repository="")


def normalize(repository: str) -> str:
    """`docker.io/library/x` and `x` name the same repository, as for a container runtime."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if repository.startswith(prefix):
            repository = repository[len(prefix) :]
    return repository.removeprefix("library/")


def split_reference(image: str) -> tuple[str, str]:
    """(repository, tag or digest) of an image reference; the tag defaults to `latest`."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        return normalize(repo), digest
    name = image.rsplit("/", 1)[-1]
    if ":" in name:
        repo, tag = image.rsplit(":", 1)
        return normalize(repo), tag
    return normalize(image), "latest"


def load(path: Path | None) -> tuple[ImageInstall, ...]:
    if path is None:
        return ()
    return tuple(ImageInstall.parse(d) for d in json.loads(path.read_text())["images"])


def resolve(images: Sequence[ImageInstall], image: str) -> ImageInstall:
    """The installation playing `image` (first match), or the host image."""
    repo, tag = split_reference(image)
    for entry in images:
        if entry.repository == repo and fnmatch.fnmatchcase(tag, entry.tags):
            if entry.root and not Path(entry.root).is_dir():
                raise UnsupportedSpec(f"image {image!r} maps to {entry.root}, which is missing")
            return entry
    return HOST_IMAGE


def command_line(container: JsonDict, install: ImageInstall, env: Mapping[str, str]) -> list[str]:
    """The container's argv by Kubernetes' command/args-vs-ENTRYPOINT/CMD rules, `$(VAR)`
    expanded in `command` and `args` (never in the image's own ENTRYPOINT/CMD)."""
    command = [expand(p, env) for p in container.get("command") or []]
    args = [expand(p, env) for p in container.get("args") or []]
    argv = command + args if command else list(install.entrypoint) + (args or list(install.cmd))
    if not argv:
        raise UnsupportedSpec(
            f"container {container['name']!r} has no command and image "
            f"{container.get('image', '')!r} has no ENTRYPOINT/CMD in the image map"
        )
    return argv
