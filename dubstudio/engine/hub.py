"""Fetch the official IndexTTS-2 files from the Hugging Face hub into one model directory.

Downloads go through huggingface_hub's cache (so an interrupted download resumes where it
stopped and a finished file is never fetched twice); each file is then hard-linked (or copied)
to the layout `dubstudio.engine.bundles.OFFICIAL_FILES` describes, and the result is verified.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine.bundles import OFFICIAL_FILES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubFile:
    """One file to fetch: hub repository, path inside it, and path in the model directory."""

    repo_id: str
    filename: str
    target: str


OFFICIAL_REPO = "IndexTeam/IndexTTS-2"

# ENGINE_SPEC §1.1 and §1.3: the model repository plus the four external models.
OFFICIAL_HUB_FILES: tuple[HubFile, ...] = (
    *(
        HubFile(OFFICIAL_REPO, name, name)
        for name in (
            "config.yaml",
            "bpe.model",
            "gpt.pth",
            "s2mel.pth",
            "wav2vec2bert_stats.pt",
            "feat1.pt",
            "feat2.pt",
        )
    ),
    HubFile(
        "amphion/MaskGCT",
        "semantic_codec/model.safetensors",
        "hf_cache/semantic_codec_model.safetensors",
    ),
    HubFile("funasr/campplus", "campplus_cn_common.bin", "hf_cache/campplus_cn_common.bin"),
    HubFile("nvidia/bigvgan_v2_22khz_80band_256x", "config.json", "hf_cache/bigvgan/config.json"),
    HubFile(
        "nvidia/bigvgan_v2_22khz_80band_256x",
        "bigvgan_generator.pt",
        "hf_cache/bigvgan/bigvgan_generator.pt",
    ),
    *(
        HubFile("facebook/w2v-bert-2.0", name, f"hf_cache/w2v-bert-2.0/{name}")
        for name in ("config.json", "preprocessor_config.json", "model.safetensors")
    ),
)

assert {f.target for f in OFFICIAL_HUB_FILES} == set(OFFICIAL_FILES)

OFFLINE_ADVICE = (
    "This machine cannot reach huggingface.co. On a computer with internet access run "
    "`dubstudio models fetch indextts2 --dir DIR` (or `hf download IndexTeam/IndexTTS-2 "
    "--local-dir DIR` plus the four files under hf_cache/ listed in `dubstudio models fetch "
    "--help`), copy DIR here, and point DubStudio at it with `--model DIR` or the "
    "DUBSTUDIO_INDEXTTS2_DIR environment variable."
)


def _place(source: Path, target: Path) -> None:
    """Put ``source`` at ``target``: a hard link (no extra disk) or, across devices, a copy."""
    if target.exists():
        if target.stat().st_size == source.stat().st_size:
            return
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(source, tmp)
        tmp.replace(target)


def fetch_official(
    dest: str | Path,
    *,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    on_progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Download the official IndexTTS-2 model (about 6 GB) into ``dest`` and verify it.

    Args:
        dest: The model directory to fill (created if needed).
        cache_dir: huggingface_hub cache directory (default: the hub's own).
        local_files_only: Use only files already in the cache (default: True when the
            ``HF_HUB_OFFLINE`` environment variable is set).
        on_progress: ``(fraction, filename)`` after each file.

    Returns:
        ``dest``.

    Raises:
        ModelLoadError: A file could not be fetched (the message says what to do offline) or
            the result is incomplete.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0", "false")
    total = len(OFFICIAL_HUB_FILES)
    failures: list[str] = []
    offline = False
    unreachable = False
    if not local_files_only and not hub_reachable():
        unreachable = True
        # Without a network the hub client retries each file for minutes; decide once, up
        # front, and use whatever the cache already holds.
        log.warning("huggingface.co is not reachable; using the local hub cache only")
        local_files_only = True
    for index, item in enumerate(OFFICIAL_HUB_FILES):
        log.info("fetching %s:%s", item.repo_id, item.filename)
        # Keep going after a failure so one message lists everything that is missing.
        try:
            cached = hf_hub_download(
                item.repo_id,
                item.filename,
                cache_dir=str(cache_dir) if cache_dir is not None else None,
                local_files_only=local_files_only,
            )
        except LocalEntryNotFoundError:
            offline = True
            failures.append(f"{item.repo_id}/{item.filename}")
            continue
        except (RepositoryNotFoundError, EntryNotFoundError) as exc:
            raise ModelLoadError(
                f"The hub has no {item.repo_id}/{item.filename} ({exc.__class__.__name__}); "
                "the official release may have moved. Check the IndexTTS-2 model page."
            ) from exc
        except OSError as exc:  # other connection errors surface as OSError subclasses
            log.warning("download of %s/%s failed: %s", item.repo_id, item.filename, exc)
            offline = True
            failures.append(f"{item.repo_id}/{item.filename}")
            continue
        _place(Path(cached), dest / item.target)
        if on_progress is not None:
            on_progress((index + 1) / total, item.target)
    if failures:
        if unreachable:
            where = "huggingface.co cannot be reached and they are not in the local hub cache"
        elif local_files_only:
            where = "they are not in the local hub cache and downloads are disabled"
        else:
            where = "the hub could not be reached"
        raise ModelLoadError(
            f"Could not get {len(failures)} of {total} files ({', '.join(failures)}): {where}. "
            + (OFFLINE_ADVICE if offline else "")
            + " Files already fetched are kept; running the command again resumes."
        )
    missing = verify_official_layout(dest)
    if missing:
        raise ModelLoadError(
            f"The download into {dest} is incomplete; missing or empty: {', '.join(missing)}. "
            "Run the fetch again; it resumes."
        )
    return dest


def hub_reachable(timeout: float = 5.0) -> bool:
    """True if a TCP connection to the hub endpoint (``HF_ENDPOINT``) opens within ``timeout``."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def verify_official_layout(root: str | Path) -> list[str]:
    """Files of the official layout that are missing or empty under ``root``."""
    root = Path(root)
    return [
        rel
        for rel in OFFICIAL_FILES
        if not (root / rel).is_file() or (root / rel).stat().st_size == 0
    ]
