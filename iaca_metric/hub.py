"""Loading and checking IACA weights: local folders, the Hugging Face Hub, and the embedded default.

Rules (they protect users from silent wrong scores and from code execution):

* weights come from ``model.safetensors`` only; pickle files (``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``)
  found on the hub or in a folder are refused with a pointer to ``iaca-metric convert``, which reads
  them locally with ``torch.load(weights_only=True)``;
* every key and every shape must match the architecture named in ``config.json`` (strict);
* every failure is a :class:`WeightsError` that says what is missing and how to get the weights offline.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from ._config import ConfigError, ModelConfig, read_config_file

if TYPE_CHECKING:  # pragma: no cover
    from .model import IACAMetric

__all__ = ["WeightsError", "DEFAULT_MODEL_NAME", "DEFAULT_MODEL_SHA256", "DEFAULT_CONFIG_SHA256", "default_model_dir",
           "read_config", "read_model_config", "sha256_file", "load_safetensors", "check_state_dict",
           "load_weights_file", "load_pretrained", "is_hub_repo_id"]

DEFAULT_MODEL_NAME = "iaca-lite-sice"
# The embedded default model's two files, sha256-pinned; both are checked on every load of the embedded
# model, so a damaged or edited installation fails loudly instead of scoring with flipped bits or a
# changed MOS map. Shipping a new model means updating exactly this pair (tests/test_default_model.py
# reads the shipped files and checks them against it).
DEFAULT_MODEL_SHA256 = "a228cda342300903761b1d8b11fb1b6ba8c8e424991a62186637605f127dc892"  # model.safetensors
DEFAULT_CONFIG_SHA256 = "959f810463cf7915466e93532e4accb3f26e6578e04a8018ede2c54a153ae3e6"  # config.json
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")

_OFFLINE_HINT = (
    "To use weights offline: on a machine with access, run "
    "`hf download {repo} --local-dir DIR` (or copy the folder holding model.safetensors and "
    "config.json), then `IACAMetric.from_pretrained('DIR')`; or populate the Hugging Face cache and set "
    "HF_HUB_OFFLINE=1."
)


class WeightsError(RuntimeError):
    """Weights or their config could not be found, read or matched to the architecture."""


# ---------------------------------------------------------------------------------------------- files
def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_model_dir() -> Path:
    """Folder of the embedded default model (``weights/iaca-lite-sice`` in the source tree, installed
    as the ``iaca_metric._weights`` package data)."""
    candidates = []
    try:
        from importlib.resources import files

        candidates.append(Path(str(files("iaca_metric._weights"))) / DEFAULT_MODEL_NAME)
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(Path(__file__).resolve().parent.parent / "weights" / DEFAULT_MODEL_NAME)
    for c in candidates:
        if (c / WEIGHTS_FILE).is_file() and (c / CONFIG_FILE).is_file():
            return c
    raise WeightsError(
        f"the embedded default model ({DEFAULT_MODEL_NAME}) is not part of this installation "
        f"(looked in: {', '.join(str(c) for c in candidates)}). Reinstall iaca-metric, or load weights "
        "explicitly with IACAMetric.from_pretrained(<folder or hub repo>) and pass model=... ."
    )


def read_model_config(path: str | os.PathLike, *, expected_sha256: str | None = None) -> ModelConfig:
    """Read and check a model ``config.json``: JSON object; ``arch`` known; ``illumination`` known;
    ``mos_scale``/``mos_offset`` finite numbers (all four required); ``mos_range`` a finite pair.
    With ``expected_sha256``, a file with another hash is refused. Raises :class:`WeightsError`."""
    return _read_config(path, expected_sha256)[0]


def read_config(path: str | os.PathLike, *, expected_sha256: str | None = None) -> dict[str, Any]:
    """Like :func:`read_model_config`, returning the whole ``config.json`` object (informational fields
    included) with the checked fields normalised (floats, ``mos_range`` a list)."""
    cfg, raw = _read_config(path, expected_sha256)
    return {**raw, **cfg.to_dict()}


def _read_config(path: str | os.PathLike, expected_sha256: str | None) -> tuple[ModelConfig, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: config.json is missing; every weight folder needs one (arch, illumination, "
                           "MOS mapping). `iaca-metric convert` writes it.")
    if expected_sha256 is not None:
        sha = sha256_file(path)
        if sha != expected_sha256:
            raise WeightsError(f"{path}: sha256 {sha} does not match the pinned {expected_sha256}; the installed "
                               "config.json is damaged or was edited. Reinstall iaca-metric.")
    try:
        return read_config_file(path)
    except ConfigError as exc:
        raise WeightsError(f"{path}: {exc}. Fix the config (or re-export the model).") from None
    except OSError as exc:
        raise WeightsError(f"{path}: config.json cannot be read ({exc}).") from None


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a truncated or corrupt file is a :class:`WeightsError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise WeightsError(f"{path}: pickle checkpoints are not loaded directly (they can run code). "
                           f"Convert it: `iaca-metric convert {path} OUT_DIR`.")
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found.")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file, probably truncated or corrupt ({exc}). "
                           "Delete it and download it again (force_download=True).") from None


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict check: same key set and same shapes as ``model``; names every offending key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    # dtypes: a float parameter/buffer must be stored as a float (int32 or bool weights would load, be
    # cast and score with truncated values); integer buffers (BatchNorm's num_batches_tracked) as integers.
    wrong_dtype = [f"{k}: {state[k].dtype} (expected a floating-point tensor)" for k in expected
                   if k in state and expected[k].is_floating_point() and not state[k].is_floating_point()]
    wrong_dtype += [f"{k}: {state[k].dtype} (expected an integer tensor)" for k in expected
                    if k in state and not expected[k].is_floating_point()
                    and (state[k].is_floating_point() or state[k].dtype == torch.bool or state[k].is_complex())]
    if missing or unexpected or mismatched or wrong_dtype:
        def fmt(items: list[str]) -> str:
            return ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {fmt(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches: {fmt(mismatched)}")
        if wrong_dtype:
            parts.append(f"wrong dtypes: {fmt(wrong_dtype)}")
        raise WeightsError(f"{source}: weights do not match the {getattr(model, 'arch', '?')} architecture; "
                           + "; ".join(parts) + ". Check config.json's arch, or re-convert the checkpoint.")


def load_weights_file(model: "IACAMetric", path: str | os.PathLike, *, source: str,
                      revision: str | None = None, expected_sha256: str | None = None) -> "IACAMetric":
    """Load ``model.safetensors`` at ``path`` into ``model`` (strict) and record its provenance.
    With ``expected_sha256``, a file with another hash is refused."""
    sha = sha256_file(path) if Path(path).is_file() else None
    if expected_sha256 is not None and sha != expected_sha256:
        raise WeightsError(f"{path}: sha256 {sha} does not match the pinned {expected_sha256}; the installed "
                           "weights are damaged or were replaced. Reinstall iaca-metric.")
    state = load_safetensors(path)
    check_state_dict(model, state, str(path))
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{path}: non-finite values (NaN or Inf) in {', '.join(bad[:8])}"
                           f"{f', ... ({len(bad)} tensors)' if len(bad) > 8 else ''}; the weights are damaged. "
                           "Download or re-export them.")
    # Loading under torch.inference_mode() must still leave ordinary tensors: inference tensors have no
    # version counter (tensor_signature) and cannot be used by IACALoss's backward pass later.
    with torch.inference_mode(False):
        model.load_state_dict(state, strict=True)
    model.weights_info = {"source": source, "revision": revision, "sha256": sha, "path": str(path),
                          "_signature": tensor_signature(model)}
    card = Path(path).parent / "README.md"
    if card.is_file():
        model.weights_info["model_card"] = str(card)
    return model


def tensor_signature(model: torch.nn.Module) -> tuple:
    """Identity and in-place-version counters of every parameter and buffer: equal as long as no weight
    was replaced or modified in place (``sha256`` in ``weights_info`` is valid only while it is equal)."""
    tensors = [*model.parameters(), *model.buffers()]
    # An inference tensor (a weight replaced under torch.inference_mode()) has no version counter, so an
    # in-place change to it cannot be seen: a fresh object makes the signature equal to no earlier one
    # (every cache treats the model as changed), which is slower but never stale.
    return (tuple(object() if t.is_inference() else t._version for t in tensors), tuple(id(t) for t in tensors))


# ---------------------------------------------------------------------------------------------- hub
def _hub_download(repo_id: str, filename: str, **kw: Any) -> str:
    """hf_hub_download with every failure turned into a WeightsError that says what and how to fix."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RemoteEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError, HFValidationError)

    hint = _OFFLINE_HINT.format(repo=repo_id)
    rev = kw.get("revision") or "main"
    try:
        return hf_hub_download(repo_id=repo_id, filename=filename, **kw)
    except RevisionNotFoundError:
        raise WeightsError(f"revision {rev!r} of hub repo {repo_id!r} does not exist. Check the branch, tag or "
                           "commit sha.") from None
    except RepositoryNotFoundError:
        raise WeightsError(f"hub repo {repo_id!r} not found (or private: pass token=...). "
                           f"If you meant a local folder, it does not exist. {hint}") from None
    except RemoteEntryNotFoundError:
        raise WeightsError(f"hub repo {repo_id!r} (revision {rev!r}) has no file {filename!r}.") from None
    except LocalEntryNotFoundError:
        raise WeightsError(f"could not get {filename!r} of hub repo {repo_id!r} (revision {rev!r}): the hub "
                           "is unreachable or offline mode is on, and the file is not in the local cache. "
                           f"{hint}") from None
    except HFValidationError as exc:
        raise WeightsError(f"{repo_id!r} is neither an existing local folder nor a valid hub repo id "
                           f"({exc}).") from None
    except (HfHubHTTPError, OSError) as exc:
        raise WeightsError(f"downloading {filename!r} of hub repo {repo_id!r} failed ({type(exc).__name__}: "
                           f"{exc}). {hint}") from None


def _refuse_pickle_only(listing: list[str], where: str) -> None:
    pickles = [f for f in listing if f.endswith(PICKLE_SUFFIXES)]
    if WEIGHTS_FILE not in listing:
        if pickles:
            raise WeightsError(
                f"{where} has only pickle checkpoints ({', '.join(pickles)}); iaca-metric loads safetensors "
                "only, because unpickling can run arbitrary code. Download the file and run "
                "`iaca-metric convert FILE OUT_DIR` (it reads it with torch.load(weights_only=True)), then "
                "load OUT_DIR.")
        raise WeightsError(f"{where} has no {WEIGHTS_FILE}.")


def load_pretrained(cls: type["IACAMetric"], model_id: str, *, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                    force_download: bool = False, token: str | bool | None = None,
                    map_location: str | torch.device = "cpu") -> "IACAMetric":
    """Implementation of :meth:`IACAMetric.from_pretrained`."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        _refuse_pickle_only([p.name for p in local.iterdir()], f"folder {local}")
        cfg = read_model_config(local / CONFIG_FILE)
        weights, source, commit = local / WEIGHTS_FILE, f"local folder {local.resolve()}", None
    else:
        if local.exists() or not is_hub_repo_id(model_id):
            what = "is a file, not a folder" if local.is_file() else "no such folder"
            raise WeightsError(f"{model_id!r}: {what}. Pass a folder holding model.safetensors + "
                               "config.json, or a hub repo id like 'org/name'.")
        kw = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                  force_download=force_download, token=token)

        def fetch(filename: str) -> str:
            try:
                return _hub_download(model_id, filename, **kw)
            except WeightsError as exc:
                # A missing config.json or model.safetensors in a repo that holds only pickle checkpoints
                # (e.g. a raw release checkpoint uploaded as is): say so, and point to the converter.
                if "has no file" not in str(exc):
                    raise
                listing = _remote_listing(model_id, revision, token)
                if any(f.endswith(PICKLE_SUFFIXES) for f in listing):
                    _refuse_pickle_only(listing, f"hub repo {model_id!r}")
                raise

        cfg = read_model_config(fetch(CONFIG_FILE))
        weights = Path(fetch(WEIGHTS_FILE))
        # The snapshot folder name is the commit sha that was resolved (cache layout: snapshots/<sha>/).
        commit = weights.parent.name if len(weights.parent.name) == 40 else revision
        source = f"hub repo {model_id}"
    model = cls.from_config(cfg)  # the same construction as IACAMetric() for the embedded model
    load_weights_file(model, weights, source=source, revision=commit)
    if not local.is_dir():
        model.weights_info.pop("model_card", None)  # the hub snapshot's README is not downloaded
    with torch.inference_mode(False):  # a move under inference mode would make inference tensors
        return model.to(map_location).eval()


def is_hub_repo_id(text: str) -> bool:
    """Whether ``text`` is a syntactically valid hub repo id (``name`` or ``org/name``; letters, digits,
    ``-``, ``_`` and ``.``, as the Hub allows, so ``org/iaca-v1.1`` is one). A path-like string
    (leading ``.``, ``/`` or ``~``, or more than one ``/``) is not."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _remote_listing(repo_id: str, revision: str | None, token: str | bool | None) -> list[str]:
    """File names of a hub repo, to tell 'only pickles here' apart from 'no weights at all'."""
    try:
        from huggingface_hub import HfApi

        return list(HfApi().list_repo_files(repo_id, revision=revision, token=token))
    except Exception:  # the listing is only used to improve an error message
        return []
