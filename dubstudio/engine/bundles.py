"""Model bundles: one description of a speech model's files, config, rates and identity.

Two kinds of bundle exist:

``indextts2``
    The official IndexTTS-2 directory as ``hf download IndexTeam/IndexTTS-2`` (plus the four
    external models under ``hf_cache/``) lays it out: ``config.yaml``, ``bpe.model``,
    ``gpt.pth``, ``s2mel.pth``, ``wav2vec2bert_stats.pt``, ``feat1.pt``, ``feat2.pt``, and
    ``hf_cache/{w2v-bert-2.0/, semantic_codec_model.safetensors, campplus_cn_common.bin,
    bigvgan/}``. Recognised by ``config.yaml``.

``dubstudio-small``
    DubStudio's own bundles (the bundled default model, tiny test bundles): a directory with
    ``bundle.json`` and safetensors weights. ``bundle.json`` holds::

        {"format": "dubstudio-bundle", "version": 1, "name": "...", "kind": "dubstudio-small",
         "token_rate": "50", "cfm_steps": 10,
         "mel": {"sample_rate": 22050, "n_fft": 1024, "hop_length": 256, "win_length": 1024,
                 "n_mels": 80, "fmin": 0, "fmax": 8000},
         "vocoder": "hifigan-universal",
         "config": {... component configs, read by the kind's builder ...},
         "files": {"t2s.safetensors": "<sha256>", ...}}

    `write_bundle_manifest` writes it (with the hashes) for training code and tests.

The identity of a bundle (`ModelBundle.identity`) is a sha256 over its config and the hashes of
its weight files; render caches key on it, so retraining a model invalidates old takes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from dubstudio.core.errors import ModelLoadError

log = logging.getLogger(__name__)

MANIFEST_NAME = "bundle.json"
OFFICIAL_CONFIG_NAME = "config.yaml"
KIND_OFFICIAL = "indextts2"
KIND_SMALL = "dubstudio-small"
KINDS = (KIND_OFFICIAL, KIND_SMALL)

# The files of an official IndexTTS-2 directory the engine reads (ENGINE_SPEC §1.1, §1.3). The
# Qwen emotion model (qwen0.6bemo4-merge/) is not used by DubStudio and is not required.
OFFICIAL_FILES: tuple[str, ...] = (
    "config.yaml",
    "bpe.model",
    "gpt.pth",
    "s2mel.pth",
    "wav2vec2bert_stats.pt",
    "feat1.pt",
    "feat2.pt",
    "hf_cache/semantic_codec_model.safetensors",
    "hf_cache/campplus_cn_common.bin",
    "hf_cache/bigvgan/config.json",
    "hf_cache/bigvgan/bigvgan_generator.pt",
    "hf_cache/w2v-bert-2.0/config.json",
    "hf_cache/w2v-bert-2.0/preprocessor_config.json",
    "hf_cache/w2v-bert-2.0/model.safetensors",
)

_HASH_CHUNK = 1 << 22


@dataclass(frozen=True)
class MelSpec:
    """Mel-spectrogram convention a bundle's S2M predicts and its vocoder consumes.

    Attributes:
        sample_rate: Vocoder output rate in Hz.
        n_fft: FFT size.
        hop_length: Samples per mel frame (the vocoder's upsampling factor).
        win_length: Window length.
        n_mels: Mel bands.
        fmin: Lowest band edge in Hz.
        fmax: Highest band edge in Hz, None = Nyquist.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None

    @property
    def frame_rate(self) -> Fraction:
        """Mel frames per second as an exact fraction (22050/256 for IndexTTS-2)."""
        return Fraction(self.sample_rate, self.hop_length)

    def config(self) -> Any:
        """The same convention as an `audio.MelConfig`, for `audio.mel_spectrogram`."""
        from dubstudio.engine.audio import MelConfig

        return MelConfig(
            self.sample_rate, self.n_fft, self.hop_length, self.win_length, self.n_mels,
            self.fmin, self.fmax,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "win_length": self.win_length,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MelSpec:
        """Inverse of `to_dict`; the string ``"None"`` for fmax means Nyquist (official config)."""
        fmax = data.get("fmax")
        return cls(
            sample_rate=int(data.get("sample_rate", data.get("sr", 22050))),
            n_fft=int(data.get("n_fft", 1024)),
            hop_length=int(data.get("hop_length", 256)),
            win_length=int(data.get("win_length", data.get("n_fft", 1024))),
            n_mels=int(data.get("n_mels", 80)),
            fmin=float(data.get("fmin", 0.0)),
            fmax=None if fmax in (None, "None", "null") else float(fmax),
        )


@dataclass(frozen=True)
class ModelBundle:
    """Everything known about a model directory before any weight is loaded.

    Attributes:
        name: Display name (``indextts2``, ``dubstudio-small-en`` ...).
        kind: ``indextts2`` or ``dubstudio-small``.
        root: The bundle directory.
        config: The parsed config (official config.yaml, or bundle.json's ``config``).
        files: Relative path -> sha256 (None when not hashed yet: official files are hashed on
            demand, see `file_hashes`).
        token_rate: Semantic tokens per second (50 for IndexTTS-2).
        mel: The mel convention.
        vocoder: ``bigvgan`` or ``hifigan-universal``.
        cfm_steps: Default Euler steps of the S2M decoder.
        identity: sha256 of config + weight hashes.
    """

    name: str
    kind: str
    root: Path
    config: Mapping[str, Any]
    files: Mapping[str, str | None]
    token_rate: Fraction
    mel: MelSpec
    vocoder: str
    cfm_steps: int = 25
    identity: str = ""
    manifest: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mel_rate(self) -> Fraction:
        """Mel frames per second."""
        return self.mel.frame_rate

    def path(self, relative: str) -> Path:
        """Absolute path of a bundle file."""
        return self.root / relative

    def describe(self) -> str:
        """One line for listings."""
        return (
            f"{self.name} ({self.kind}, {float(self.token_rate):g} tok/s, "
            f"vocoder {self.vocoder}) at {self.root}"
        )


# --------------------------------------------------------------------------------------------
# Hashing


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def quick_fingerprint(path: str | Path, edge: int = 1 << 20) -> str:
    """Content fingerprint of a large file: sha256 of its size, first and last ``edge`` bytes.

    The official weights are several GB; hashing them fully would delay every start by tens of
    seconds. Size plus both ends changes whenever a checkpoint is replaced or truncated, which is
    what a render cache must notice. `verify_bundle` still checks every key.
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(edge))
        if size > 2 * edge:
            handle.seek(size - edge)
            digest.update(handle.read(edge))
    return digest.hexdigest()


def bundle_identity(config: Mapping[str, Any], hashes: Mapping[str, str | None]) -> str:
    """sha256 over the canonical JSON of a config and its weight-file hashes."""
    blob = json.dumps(
        {"config": config, "files": dict(sorted(hashes.items()))},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Directories


def user_data_dir() -> Path:
    """Per-user DubStudio data directory (models are kept under ``models/``)."""
    override = os.environ.get("DUBSTUDIO_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("DubStudio", appauthor=False))


def user_cache_dir() -> Path:
    """Per-user DubStudio cache directory."""
    override = os.environ.get("DUBSTUDIO_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("DubStudio", appauthor=False))


def user_models_dir() -> Path:
    """Where `dubstudio models fetch` puts models and where user bundles are found."""
    return user_data_dir() / "models"


def bundled_models_dirs() -> list[Path]:
    """Directories holding the models that ship with DubStudio."""
    package_root = Path(__file__).resolve().parents[1]
    candidates = [
        package_root / "resources" / "models",
        package_root.parent / "resources" / "models",
    ]
    return [p for p in candidates if p.is_dir()]


def official_dir_candidates() -> list[Path]:
    """Where an official IndexTTS-2 directory is looked for, in order."""
    out = []
    env = os.environ.get("DUBSTUDIO_INDEXTTS2_DIR")
    if env:
        out.append(Path(env))
    out.append(user_models_dir() / KIND_OFFICIAL)
    return out


# --------------------------------------------------------------------------------------------
# Loading


def is_bundle_dir(path: Path) -> bool:
    """True if ``path`` holds a bundle of a known kind."""
    return (path / MANIFEST_NAME).is_file() or (path / OFFICIAL_CONFIG_NAME).is_file()


def load_bundle(name_or_dir: str | Path) -> ModelBundle:
    """Describe a bundle from its directory or its name.

    Args:
        name_or_dir: A bundle directory, or a name from `list_bundles` (``default`` picks the
            first bundled model).

    Raises:
        ModelLoadError: No such bundle, or its description is malformed.
    """
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return _load_dir(path)
    name = str(name_or_dir)
    bundles = list_bundles()
    if name == "default":
        shipped = [b for b in bundles if b.kind == KIND_SMALL and _is_bundled(b.root)]
        if shipped:
            return shipped[0]
    for bundle in bundles:
        if bundle.name == name or bundle.root.name == name:
            return bundle
    known = ", ".join(b.name for b in bundles) or "none installed"
    raise ModelLoadError(
        f"No model named '{name}' (known: {known}). Pass a model directory, or get the official "
        "model with `dubstudio models fetch indextts2`."
    )


def _is_bundled(root: Path) -> bool:
    return any(root.resolve().is_relative_to(d.resolve()) for d in bundled_models_dirs())


def _load_dir(path: Path) -> ModelBundle:
    if (path / MANIFEST_NAME).is_file():
        return _load_dubstudio(path)
    if (path / OFFICIAL_CONFIG_NAME).is_file():
        return _load_official(path)
    raise ModelLoadError(
        f"{path} is not a model directory: it has neither {MANIFEST_NAME} (DubStudio model) nor "
        f"{OFFICIAL_CONFIG_NAME} (IndexTTS-2)."
    )


def _load_dubstudio(path: Path) -> ModelBundle:
    manifest_path = path / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Cannot read {manifest_path}: {exc}") from exc
    if manifest.get("format") != "dubstudio-bundle":
        raise ModelLoadError(f"{manifest_path} is not a DubStudio bundle description.")
    kind = manifest.get("kind", KIND_SMALL)
    if kind not in KINDS:
        raise ModelLoadError(f"{manifest_path}: unknown model kind '{kind}'.")
    files: dict[str, str | None] = dict(manifest.get("files", {}))
    for rel, digest in list(files.items()):
        if not digest and (path / rel).is_file():
            files[rel] = sha256_file(path / rel)
    config = manifest.get("config", {})
    mel = MelSpec.from_dict(manifest.get("mel", {}))
    return ModelBundle(
        name=str(manifest.get("name", path.name)),
        kind=kind,
        root=path,
        config=config,
        files=files,
        token_rate=Fraction(str(manifest.get("token_rate", "50"))),
        mel=mel,
        vocoder=str(manifest.get("vocoder", "hifigan-universal")),
        cfm_steps=int(manifest.get("cfm_steps", 10)),
        identity=bundle_identity({k: v for k, v in manifest.items() if k != "files"}, files),
        manifest=manifest,
    )


def _load_official(path: Path) -> ModelBundle:
    import yaml

    try:
        config = yaml.safe_load((path / OFFICIAL_CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"Cannot read {path / OFFICIAL_CONFIG_NAME}: {exc}") from exc
    if not isinstance(config, dict) or "gpt" not in config or "s2mel" not in config:
        raise ModelLoadError(
            f"{path / OFFICIAL_CONFIG_NAME} is not an IndexTTS-2 config (no gpt/s2mel sections)."
        )
    spect = config["s2mel"].get("preprocess_params", {})
    spect_params = dict(spect.get("spect_params", {}))
    spect_params["sample_rate"] = spect.get("sr", 22050)
    mel = MelSpec.from_dict(spect_params)
    files = {rel: None for rel in OFFICIAL_FILES}
    # Identity from fingerprints of what exists; missing files are reported by verify_bundle and
    # by the loaders, not here.
    hashes = {rel: quick_fingerprint(path / rel) for rel in files if (path / rel).is_file()}
    return ModelBundle(
        name=KIND_OFFICIAL,
        kind=KIND_OFFICIAL,
        root=path,
        config=config,
        files=files,
        # 16 kHz / 320 (w2v-BERT stride) = 50 tokens per second; config's 24000/1024 is legacy.
        token_rate=Fraction(50),
        mel=mel,
        vocoder="bigvgan",
        cfm_steps=25,
        identity=bundle_identity(config, hashes),
    )


def list_bundles() -> list[ModelBundle]:
    """Every bundle found: shipped models, the user's models dir, the official dir if present."""
    seen: set[Path] = set()
    out: list[ModelBundle] = []
    roots: list[Path] = []
    for base in [*bundled_models_dirs(), user_models_dir()]:
        if base.is_dir():
            roots.extend(sorted(p for p in base.iterdir() if p.is_dir()))
    roots.extend(official_dir_candidates())
    for root in roots:
        resolved = root.resolve()
        if resolved in seen or not root.is_dir() or not is_bundle_dir(root):
            continue
        seen.add(resolved)
        try:
            out.append(_load_dir(root))
        except ModelLoadError as exc:
            log.warning("skipping model directory %s: %s", root, exc)
    return out


# --------------------------------------------------------------------------------------------
# Writing and verifying


def write_bundle_manifest(
    root: str | Path,
    *,
    name: str,
    config: Mapping[str, Any],
    token_rate: Fraction | int | str,
    mel: MelSpec,
    vocoder: str,
    cfm_steps: int = 10,
    files: Iterable[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``bundle.json`` for a DubStudio bundle, hashing its weight files.

    Args:
        root: The bundle directory (weight files already written).
        name: Bundle name.
        config: Component configs for the kind's builder.
        token_rate: Semantic tokens per second.
        mel: Mel convention.
        vocoder: Vocoder kind.
        cfm_steps: Default Euler steps.
        files: Relative weight-file paths; default every ``*.safetensors`` in ``root``.
        extra: More top-level manifest entries.

    Returns:
        The manifest path.
    """
    root = Path(root)
    rels = (
        sorted(files)
        if files is not None
        else sorted(str(p.relative_to(root)) for p in root.rglob("*.safetensors"))
    )
    manifest: dict[str, Any] = {
        "format": "dubstudio-bundle",
        "version": 1,
        "name": name,
        "kind": KIND_SMALL,
        "token_rate": str(Fraction(token_rate)),
        "cfm_steps": cfm_steps,
        "mel": mel.to_dict(),
        "vocoder": vocoder,
        "config": dict(config),
        **dict(extra or {}),
        "files": {rel: sha256_file(root / rel) for rel in rels},
    }
    path = root / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


@dataclass
class VerifyReport:
    """Outcome of `verify_bundle`: one line per checked item and the problems found."""

    bundle: ModelBundle
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def verify_bundle(bundle: ModelBundle, *, check_keys: bool = True) -> VerifyReport:
    """Check a bundle's files: presence, recorded hashes, and (optionally) strict state-dict keys.

    Args:
        bundle: The bundle.
        check_keys: Also compare each weight file's keys and shapes with what the model expects
            (official kind: `official_state_dict_shapes`; DubStudio kind: the kind's builder).
    """
    report = VerifyReport(bundle)
    for rel, recorded in sorted(bundle.files.items()):
        path = bundle.path(rel)
        if not path.is_file():
            report.problems.append(f"missing file: {rel}")
            continue
        if recorded:
            actual = sha256_file(path)
            if actual != recorded:
                report.problems.append(
                    f"hash mismatch: {rel} (expected {recorded[:12]}…, found {actual[:12]}…); "
                    "the file is corrupted or was replaced"
                )
                continue
        report.checked.append(f"file ok: {rel}")
    if not check_keys or report.problems:
        return report
    if bundle.kind == KIND_OFFICIAL:
        _verify_official_keys(bundle, report)
    else:
        _verify_by_building(bundle, report)
    return report


def read_official_s2mel(path: str | Path) -> dict[str, Any]:
    """The official ``s2mel.pth`` flattened to ``<submodel>.<name>`` keys (see `checkpoints`)."""
    from dubstudio.engine.checkpoints import read_official_s2mel as _read

    return _read(path)


def read_official_tensor(path: str | Path) -> Any:
    """A bare tensor file of the official release (``feat1.pt``, ``feat2.pt``), weights only."""
    from dubstudio.engine.checkpoints import read_tensor

    return read_tensor(path)


def _official_state(bundle: ModelBundle, component: str) -> dict[str, tuple[int, ...]]:
    from dubstudio.engine.checkpoints import read_state_dict

    if component == "gpt":
        state = read_state_dict(bundle.path("gpt.pth"))
    elif component == "s2mel":
        state = read_official_s2mel(bundle.path("s2mel.pth"))
    elif component == "bigvgan":
        state = read_state_dict(bundle.path("hf_cache/bigvgan/bigvgan_generator.pt"))
    elif component == "campplus":
        state = read_state_dict(bundle.path("hf_cache/campplus_cn_common.bin"))
    elif component == "semantic_codec":
        state = read_state_dict(bundle.path("hf_cache/semantic_codec_model.safetensors"))
    else:
        raise ValueError(component)
    return {k: tuple(v.shape) for k, v in state.items()}


def _verify_official_keys(bundle: ModelBundle, report: VerifyReport) -> None:
    from dubstudio.core.errors import CheckpointMismatchError
    from dubstudio.engine.checkpoints import check_keys, official_state_dict_shapes

    for component in ("gpt", "s2mel", "bigvgan", "campplus", "semantic_codec"):
        try:
            expected = official_state_dict_shapes(component)
            found = _official_state(bundle, component)
            check_keys(expected, found, component=component)
            report.checked.append(f"keys ok: {component} ({len(found)} tensors)")
        except (CheckpointMismatchError, ModelLoadError) as exc:
            report.problems.append(str(exc))
        except ImportError as exc:
            report.problems.append(f"cannot check {component}: {exc}")


def _verify_by_building(bundle: ModelBundle, report: VerifyReport) -> None:
    from dubstudio.core.errors import CheckpointMismatchError

    try:
        from dubstudio.engine.pipeline import build_components

        build_components(bundle, device=None)
        report.checked.append("keys ok: every component loaded strictly")
    except (CheckpointMismatchError, ModelLoadError) as exc:
        report.problems.append(str(exc))


# --------------------------------------------------------------------------------------------
# Tiny bundles for tests: the real T2S and S2M classes at a few thousand parameters, plus a
# character front-end, a frame tokenizer and a tiny HiFi-GAN, just big enough to exercise every
# shape and length rule of the pipeline. They are random: they make noise, not
# speech. Bundles written by `create_tiny_bundle(kind="fast")` carry ``config.builder = "tiny"``.

TINY_FILES = (
    "t2s.safetensors",
    "s2m.safetensors",
    "reference.safetensors",
    "vocoder.safetensors",
    "emotion.safetensors",
)


def _tiny_modules(config: Mapping[str, Any]) -> dict[str, Any]:
    """Random-initialised modules of a tiny bundle config (names match its weight files)."""
    import torch
    from torch import nn

    from dubstudio.engine.s2m import S2MConfig, S2MModel
    from dubstudio.engine.t2s.config import T2SConfig
    from dubstudio.engine.t2s.model import UnifiedVoice
    from dubstudio.engine.vocoders.hifigan import HiFiGAN, HiFiGANConfig

    t2s_cfg = T2SConfig.tiny(cond_input_dim=int(config["n_mels"]))
    s2m_cfg = S2MConfig.from_dict(dict(config["s2m"]))
    codes = t2s_cfg.start_mel_token  # semantic vocabulary without start/stop

    class TinyReference(nn.Module):
        """Frame tokenizer (mel frame -> code), code embedding and style projection."""

        def __init__(self) -> None:
            super().__init__()
            self.tokenizer = nn.Linear(int(config["n_mels"]), codes)
            self.embedding = nn.Embedding(codes, s2m_cfg.content_dim)
            self.style = nn.Linear(int(config["n_mels"]), s2m_cfg.style_dim)

    emotion = nn.ParameterDict(
        {
            "spk_matrix": nn.Parameter(torch.randn(sum(config["emo_num"]), s2m_cfg.style_dim)),
            "emo_matrix": nn.Parameter(
                0.1 * torch.randn(sum(config["emo_num"]), t2s_cfg.model_dim)
            ),
        }
    )
    return {
        "t2s": UnifiedVoice(t2s_cfg),
        "s2m": S2MModel(s2m_cfg),
        "reference": TinyReference(),
        "vocoder": HiFiGAN(HiFiGANConfig.tiny()),
        "emotion": emotion,
    }


def create_tiny_bundle(
    root: str | Path, seed: int = 0, *, name: str = "tiny", kind: str = "small"
) -> Path:
    """Write a tiny random bundle of the real classes (for tests and benchmarks).

    Args:
        root: Directory to create (or fill).
        seed: Seed of the random weights; the same seed writes identical files.
        name: Bundle name.
        kind: ``"small"``: the bundled default model's kind and layout
            (`dubstudio.engine.small.create_tiny_small_bundle`: phoneme front-end, frame
            tokenizer, GE2E style, T2E head, HiFi-GAN universal vocoder) — what the shipped
            model runs through. ``"fast"``: character front-end, random frame tokenizer and a
            tiny HiFi-GAN; several times cheaper, for tests that render hundreds of lines.

    Returns:
        ``root``.
    """
    if kind == "small":
        from dubstudio.engine.small import create_tiny_small_bundle

        return create_tiny_small_bundle(root, seed, name=name)
    if kind != "fast":
        raise ValueError(f"unknown tiny bundle kind {kind!r}; use 'small' or 'fast'")
    import torch
    from safetensors.torch import save_file

    from dubstudio.engine.s2m import S2MConfig

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "builder": "tiny",
        "n_mels": 80,
        "emo_num": [1, 2, 1, 1, 1, 1, 1, 2],
        "s2m": S2MConfig.tiny(style_dim=16, gpt_dim=32).to_dict(),
        # Plain sampling and a short free-run cap keep CPU tests fast; random weights rarely stop.
        "decode": {"num_beams": 1, "max_tokens": 200},
    }
    torch.manual_seed(seed)
    modules = _tiny_modules(config)
    for key, module in modules.items():
        state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(root / f"{key}.safetensors"))
    write_bundle_manifest(
        root,
        name=name,
        config=config,
        token_rate=50,
        mel=MelSpec(fmax=8000.0),
        vocoder="hifigan-tiny",
        cfm_steps=4,
        files=TINY_FILES,
    )
    return root


class _CharFrontEnd:
    """Tiny bundles' text front-end: upper-cased characters hashed into the text vocabulary."""

    def __init__(self, vocab: int, max_tokens: int) -> None:
        self.vocab = vocab
        self.max_tokens = max_tokens

    def normalize(self, text: str) -> str:
        return " ".join(text.split()).upper()

    def encode(self, text: str) -> list[int]:
        # Ids 0 and 1 are the start/stop text tokens.
        return [2 + ord(ch) % (self.vocab - 2) for ch in self.normalize(text)]

    def segments(self, text: str, max_tokens: int = 120) -> list[list[int]]:
        import re

        limit = min(max_tokens, self.max_tokens)
        out: list[list[int]] = []
        for sentence in re.split(r"(?<=[.!?])\s+", self.normalize(text)):
            ids = self.encode(sentence)
            out.extend(ids[i : i + limit] for i in range(0, len(ids), limit))
        return [s for s in out if s]


class _TinyReferenceEncoder:
    """Tiny bundles' reference path: mel frames as conditioning, frame codes as prompt."""

    def __init__(self, module: Any, mel: MelSpec, token_rate: Fraction, device: Any) -> None:
        self.module = module
        self.mel = mel
        self.token_rate = token_rate
        self.device = device

    def embed(self, codes: Any) -> Any:
        return self.module.embedding(codes.to(self.device))

    def encode(self, audio: Any, sample_rate: int) -> Any:
        import torch

        from dubstudio.engine.audio import mel_spectrogram, resample
        from dubstudio.engine.reference import ReferenceFeatures

        with torch.inference_mode():
            wav = resample(torch.from_numpy(audio).float(), sample_rate, self.mel.sample_rate)
            ref_mel = mel_spectrogram(wav[None].to(self.device), self.mel.config())  # (1, M, F_ref)
            frames = ref_mel.transpose(1, 2)  # (1, M, F) -> (1, F, M)
            n_tok = max(1, round(frames.shape[1] * self.token_rate / self.mel.frame_rate))
            at_tokens = torch.nn.functional.interpolate(
                ref_mel, size=n_tok, mode="nearest"
            ).transpose(1, 2)  # (1, T_tok, M)
            codes = self.module.tokenizer(at_tokens).argmax(-1)  # (1, T_tok)
            style = torch.tanh(self.module.style(frames.mean(dim=1)))  # (1, S)
            return ReferenceFeatures(frames, self.embed(codes), ref_mel, style)


def build_tiny_components(bundle: ModelBundle, device: Any) -> Any:
    """Load a tiny bundle written by `create_tiny_bundle` (strict keys)."""
    from dubstudio.engine.checkpoints import load_strict, read_state_dict
    from dubstudio.engine.pipeline import EngineComponents
    from dubstudio.engine.t2s.decoding import DecodeParams
    from dubstudio.engine.t2s.emotion import EmotionMatrices

    modules = _tiny_modules(bundle.config)
    for key, module in modules.items():
        state = read_state_dict(bundle.path(f"{key}.safetensors"))
        load_strict(module, state, component=f"{bundle.name}/{key}")
        module.to(device).eval()
    t2s = modules["t2s"]
    emo = modules["emotion"]
    return EngineComponents(
        bundle=bundle,
        device=device,
        front_end=_CharFrontEnd(t2s.config.number_text_tokens, t2s.config.max_text_tokens),
        reference_encoder=_TinyReferenceEncoder(
            modules["reference"], bundle.mel, bundle.token_rate, device
        ),
        code_embedder=_TinyReferenceEncoder(
            modules["reference"], bundle.mel, bundle.token_rate, device
        ),
        t2s=t2s,
        s2m=modules["s2m"],
        vocoder=modules["vocoder"],
        emotion_matrices=EmotionMatrices(
            emo["spk_matrix"].detach(), emo["emo_matrix"].detach(), tuple(bundle.config["emo_num"])
        ),
        decode_params=DecodeParams(**bundle.config.get("decode", {})),
    )
