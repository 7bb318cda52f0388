"""Shareable model folders: ``model.safetensors`` + ``config.json`` + a ``README.md`` model card.

This is the layout the model hub and transformers-style tools expect, so a folder written here can be
uploaded as it is (:func:`push_to_hub`) and read back from a local path or a hub repo id
(:func:`load_pretrained_folder`). The method packages define what their ``config`` holds and build
the card's content; this module only writes, checks and reads the files.

``config.json``::

    {"format": "<tag of the model kind>", "format_version": 1, "library": "compact_ssl",
     "library_version": "0.1.0", "config": {...the model config...}, "info": {...provenance...}}

Reading checks the tag and the version and refuses anything else (a transformers folder, another
model kind, a newer format) with a message naming the folder. Weights are safetensors (no pickle:
loading a downloaded folder cannot run code). The folder is written atomically
(:func:`compact_ssl.io.staged_folder`): a reader never sees a half-written one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from compact_ssl import __version__
from compact_ssl.io import staged_folder

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
FOLDER_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)
LIBRARY = "compact_ssl"
#: ``library_name`` of the card's metadata
CARD_LIBRARY_NAME = "compact-ssl"


class PretrainedFormatError(ValueError):
    """A folder that is not a pretrained folder of the expected kind (the message names it)."""


class PretrainedFetchError(OSError):
    """A hub repo id that could not be fetched (no network, no such repo, no access)."""


@dataclass(frozen=True)
class ResultsTable:
    """A results table for the model card (cells already formatted as text)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    source: str = ""  #: the file the numbers come from

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"results row {row} has {len(row)} cells for {len(self.columns)} columns")

    def to_markdown(self) -> str:
        """The table in Markdown, with its caption and source below."""
        lines = [_table_line(self.columns), "|" + "|".join([":---"] + ["---:"] * (len(self.columns) - 1)) + "|"]
        lines += [_table_line(row) for row in self.rows]
        notes = [self.caption] if self.caption else []
        if self.source:
            notes.append(f"Source: `{self.source}`.")
        return "\n".join(lines) + ("\n\n" + " ".join(notes) if notes else "")


def _table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


@dataclass(frozen=True)
class CardInfo:
    """What the model card says (each method package fills it from its model and run).

    Attributes:
        title: the card's heading.
        summary: one paragraph on what the model is.
        architecture: the architecture in words (Markdown).
        num_parameters: exact parameter count.
        load_code: Python code that loads the model in one call.
        parameter_detail: optional sentence on how the count splits (e.g. heads).
        teacher: the teacher (distillation) or the initial weights; ``None`` leaves the section out.
        base_model: hub id of the teacher / initial weights where known (card metadata).
        training_data: what the model was trained on.
        datasets: hub dataset ids (card metadata).
        recipe: how it was trained (method, steps, the recipe or command).
        config_text: the resolved training config (YAML), shown verbatim.
        results: a results table, or ``None``.
        license: card metadata; ``other`` when the caller does not say (the weights derive from the
            teacher's and the data's licenses).
        tags: card metadata.
        pipeline_tag: card metadata (``feature-extraction``, ``audio-classification``).
        extra_sections: more sections (heading -> Markdown), placed before "How to load".
    """

    title: str
    summary: str
    architecture: str
    num_parameters: int
    load_code: str
    parameter_detail: str = ""
    teacher: str | None = None
    base_model: str | None = None
    training_data: str | None = None
    datasets: tuple[str, ...] = ()
    recipe: str | None = None
    config_text: str | None = None
    results: ResultsTable | None = None
    license: str = "other"
    tags: tuple[str, ...] = ()
    pipeline_tag: str | None = None
    extra_sections: Mapping[str, str] = field(default_factory=dict)


def card_metadata(info: CardInfo) -> dict[str, Any]:
    """The card's YAML front matter as a dict (hub metadata field names)."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(license=info.license, library_name=CARD_LIBRARY_NAME, tags=list(info.tags) or None,
                         base_model=info.base_model, datasets=list(info.datasets) or None,
                         pipeline_tag=info.pipeline_tag)
    return data.to_dict()


def render_card(info: CardInfo) -> str:
    """The ``README.md`` model card: YAML front matter, then architecture, parameter count, teacher,
    training data, recipe and config, results and how to load it."""
    lines = ["---", yaml.safe_dump(card_metadata(info), sort_keys=True).rstrip(), "---", "",
             f"# {info.title}", "", info.summary, "", "## Architecture", "", info.architecture, "",
             f"Parameters: **{info.num_parameters:,}** ({info.num_parameters} exactly)."
             + (f" {info.parameter_detail}" if info.parameter_detail else ""), ""]
    if info.teacher is not None:
        lines += ["## Teacher", "", info.teacher, ""]
    lines += ["## Training data", "", info.training_data or "Not recorded.", ""]
    lines += ["## Recipe and config", "", info.recipe or "Not recorded.", ""]
    if info.config_text:
        lines += ["Resolved training config:", "", "```yaml", info.config_text.rstrip(), "```", ""]
    lines += ["## Results", ""]
    lines += [info.results.to_markdown() if info.results is not None else "No results were given at export.", ""]
    for heading, text in info.extra_sections.items():
        lines += [f"## {heading}", "", text, ""]
    lines += ["## How to load", "", "```python", info.load_code.rstrip(), "```", "",
              f"Files: `{WEIGHTS_FILE}` (weights), `{CONFIG_FILE}` (format tag, version and model config), "
              f"`{CARD_FILE}` (this card). Written by {LIBRARY} {__version__}.", ""]
    return "\n".join(lines)


def save_pretrained_folder(folder: str | Path, *, format_tag: str, version: int, config: Mapping[str, Any],
                           state_dict: Mapping[str, Tensor], card: CardInfo,
                           info: Mapping[str, Any] | None = None) -> Path:
    """Write ``folder`` (weights, ``config.json``, card) atomically; returns ``folder``.

    ``config`` and ``info`` must be JSON data; ``info`` is provenance (method, step, source file).
    A previous ``folder`` is replaced only once the new one is complete.
    """
    folder = Path(folder)
    document = {"format": format_tag, "format_version": version, "library": LIBRARY, "library_version": __version__,
                "config": dict(config), "info": dict(info or {})}
    text = json.dumps(document, indent=2) + "\n"  # fails before anything is written if it is not JSON data
    from safetensors.torch import save_file

    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    with staged_folder(folder) as tmp:  # the staged folder is renamed into place whole
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(text)
        (tmp / CARD_FILE).write_text(render_card(card))
    return folder


@dataclass(frozen=True)
class PretrainedFolder:
    """A checked pretrained folder: where it is, its model config, provenance and weights."""

    folder: Path
    config: dict[str, Any]
    info: dict[str, Any]
    state_dict: dict[str, Tensor]


def _looks_like_path(name: str) -> bool:
    # a repo id is "owner/name" (or "name"); anything else with separators is meant as a path
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or name.endswith("/")


def resolve_pretrained(folder_or_repo_id: str | Path, revision: str | None = None,
                       cache_dir: str | Path | None = None) -> Path:
    """The local folder of ``folder_or_repo_id``: an existing path as it is, otherwise a hub repo id
    fetched with :func:`huggingface_hub.snapshot_download` (only the folder's three files).

    Raises:
        PretrainedFormatError: the path is a file, or names no folder and is no valid repo id.
        PretrainedFetchError: the repo id could not be fetched; the message says a local folder works.
    """
    path = Path(folder_or_repo_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise PretrainedFormatError(f"{path}: is a file; a pretrained model is a folder holding "
                                    f"{', '.join(FOLDER_FILES)} (pass the folder)")
    name = str(folder_or_repo_id)
    if isinstance(folder_or_repo_id, Path) or _looks_like_path(name):
        raise PretrainedFormatError(f"{name}: no such folder (and not a hub repo id of the form owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(name, revision=revision, cache_dir=cache_dir, allow_patterns=list(FOLDER_FILES),
                                      library_name=CARD_LIBRARY_NAME, library_version=__version__))
    except HFValidationError as err:
        raise PretrainedFormatError(f"{name}: no such folder, and not a valid hub repo id ({err})") from err
    except OSError as err:  # the hub's errors: offline, no such repo or revision, gated, HTTP status
        raise PretrainedFetchError(
            f"{name}: no such local folder, and the hub repo {name!r} could not be fetched ({type(err).__name__}: "
            f"{err}). Without network access, copy the model folder here (e.g. `hf download {name} --local-dir DIR` "
            "on a machine with access) and pass the local folder DIR instead") from err


def read_pretrained_config(folder: str | Path, format_tag: str, version: int) -> dict[str, Any]:
    """``folder``'s ``config.json`` after checking every file is there and the format tag and
    version are ``format_tag`` / ``version``; errors name the folder and the problem."""
    folder = Path(folder)
    missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
    if missing:
        raise PretrainedFormatError(f"{folder}: not a complete pretrained folder, missing {', '.join(missing)} "
                                    "(an interrupted copy or download? fetch or export it again)")
    try:
        document = json.loads((folder / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PretrainedFormatError(f"{folder}: {CONFIG_FILE} is not valid JSON ({err}); export the model again") from err
    if not isinstance(document, dict) or "format" not in document:
        raise PretrainedFormatError(f"{folder}: {CONFIG_FILE} has no 'format' tag, so this is not a {LIBRARY} "
                                    f"pretrained folder (a transformers model folder? load it with transformers)")
    if document["format"] != format_tag:
        raise PretrainedFormatError(f"{folder}: holds a {document['format']!r} model, not a {format_tag!r} one; "
                                    "load it with the class of that kind")
    if document.get("format_version") != version:
        raise PretrainedFormatError(f"{folder}: format version {document.get('format_version')!r} of {format_tag!r} "
                                    f"is not the supported version {version}; use the {LIBRARY} version that wrote it "
                                    f"({document.get('library_version', 'unknown')})")
    if not isinstance(document.get("config"), dict):
        raise PretrainedFormatError(f"{folder}: {CONFIG_FILE} has no 'config' mapping")
    return document


def load_pretrained_folder(folder_or_repo_id: str | Path, format_tag: str, version: int, *,
                           revision: str | None = None, cache_dir: str | Path | None = None) -> PretrainedFolder:
    """Resolve (:func:`resolve_pretrained`), check (:func:`read_pretrained_config`) and read a folder."""
    folder = resolve_pretrained(folder_or_repo_id, revision, cache_dir)
    document = read_pretrained_config(folder, format_tag, version)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state_dict = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError) as err:
        raise PretrainedFormatError(f"{folder}: {WEIGHTS_FILE} cannot be read ({err}); the file is damaged or "
                                    "truncated, fetch or export it again") from err
    return PretrainedFolder(folder, document["config"], dict(document.get("info") or {}), state_dict)


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
                revision: str | None = None, commit_message: str = "Upload model", create_pr: bool = False) -> str:
    """Upload the pretrained ``folder`` to the hub repo ``repo_id`` (created if missing); returns the
    commit URL. Needs network access and a token with write access (``hf auth login`` or ``token``)."""
    folder = Path(folder)
    missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
    if missing:
        raise PretrainedFormatError(f"{folder}: not a pretrained folder, missing {', '.join(missing)}; "
                                    "write it with save_pretrained first")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                               commit_message=commit_message, create_pr=create_pr, allow_patterns=list(FOLDER_FILES))
    return str(commit.commit_url)

