"""LPIPS's two weight files: where they live, whether they are sound, and fetching them once.

torch-free (the daemon's CLI and doctor use it, and the evaluate stage): the files are checked by
their SHA-256, never loaded here. torchvision's AlexNet comes from download.pytorch.org (or a
mirror with the same file name), streamed into a temporary file beside its final name and renamed
only once its checksum matches; the linear layers are the ``lpips`` package's own
``weights/v0.1/alex.pth``, copied out of the installed package (``pip install --no-deps
lpips==0.1.4``: its declared torchvision must not replace our torch), which is never imported, as
importing it imports torchvision.

The folder is ``lpips-weights`` in the state folder unless the setting ``lpips_weights`` names
another: the state folder is the one place the service always may write (ReadWritePaths,
StateDirectory) and the CLI finds through the configuration alone, whatever $HOME or $TORCH_HOME
the caller has.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from stages.atomic_files import atomic_write_with

DEFAULT_FOLDER = "lpips-weights"  # in the state folder
DEFAULT_BASE_URL = "https://download.pytorch.org/models/"
LPIPS_PACKAGE = "lpips==0.1.4"
FETCH_COMMAND = "instarecon fetch-weights"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsFile:
    """One pinned file: its name (also its name on the server), SHA-256 and, where known, size."""

    name: str
    sha256: str
    size: int | None
    what: str


ALEXNET = WeightsFile("alexnet-owt-7be5be79.pth", "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
                      244_408_911, "torchvision's ImageNet AlexNet")
LINEAR = WeightsFile("alex.pth", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", None,
                     "the lpips package's v0.1 linear layers")


class WeightsError(Exception):
    """A fetch or copy that did not happen; the message is one line: what, from where, why."""


def weights_folder(setting: str, state: Path) -> Path:
    """The setting ``lpips_weights`` if set, else ``<state>/lpips-weights``."""
    return Path(setting).expanduser() if setting else Path(state) / DEFAULT_FOLDER


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def problems(folder: Path, files: tuple[WeightsFile, ...] = (ALEXNET, LINEAR)) -> list[str]:
    """What is wrong with the weights in ``folder``: one line per missing or damaged file; [] when sound."""
    found = []
    for file in files:
        path = Path(folder) / file.name
        if not path.is_file():
            found.append(f"{file.name} missing in {folder}")
        elif (got := sha256_of(path)) != file.sha256:
            found.append(f"{path}: SHA-256 {got[:12]}..., expected {file.sha256[:12]}... (damaged or another file)")
    return found


def lpips_package_file() -> Path | None:
    """The installed lpips package's ``weights/v0.1/alex.pth``, found without importing the package."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "weights" / "v0.1" / LINEAR.name
        if candidate.is_file():
            return candidate
    return None


def fetch(file: WeightsFile, url: str, folder: Path, timeout: float = 60.0) -> bool:
    """Download ``url`` into ``folder / file.name`` if that is not already the pinned file.

    True if it downloaded, False if the file was there. Streams the SHA-256 while writing a
    temporary file beside the final name; renames only a file of the right checksum (and size),
    after fsync. Any failure removes the temporary file and raises WeightsError.
    """
    if _is_pinned(folder / file.name, file):
        return False
    try:  # before any file is made: a server that cannot be reached leaves the folder as it was
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise WeightsError(f"cannot fetch {file.name} from {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsError(f"cannot fetch {file.name} from {url}: {reason}") from None

    def download(handle: BinaryIO) -> str:
        try:
            return _copy_hashing(response, handle)
        except (http.client.HTTPException, OSError) as error:
            raise WeightsError(f"cannot fetch {file.name} from {url}: {error}") from None

    with response:
        _write_verified(file, folder, download, url)
    return True


def copy_linear(folder: Path, source: Path | None = None, file: WeightsFile = LINEAR) -> bool:
    """Copy the lpips package's linear layers (or ``source``) into ``folder``, checked like a download.

    True if it copied, False if the file was there; WeightsError when the package is missing.
    """
    if _is_pinned(folder / file.name, file):
        return False
    source = source if source is not None else lpips_package_file()
    if source is None:
        raise WeightsError(f"the lpips package is not installed, and {file.name} ({file.what}) comes from it: "
                           f"pip install --no-deps {LPIPS_PACKAGE} (into the service's environment), then run this again")

    def copy(handle: BinaryIO) -> str:
        with open(source, "rb") as original:
            return _copy_hashing(original, handle)

    _write_verified(file, folder, copy, str(source))
    return True


def fetch_all(folder: Path, base_url: str = DEFAULT_BASE_URL, alexnet: WeightsFile = ALEXNET,
              linear: WeightsFile = LINEAR, linear_source: Path | None = None,
              say: Callable[[str], None] = print) -> None:
    """Both files into ``folder``, each step said in a line; both are tried, and WeightsError then
    carries a line per file that failed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    url = base_url.rstrip("/") + "/" + alexnet.name
    steps = ((linear, "copied from the lpips package", lambda: copy_linear(folder, linear_source, linear)),
             (alexnet, f"fetched from {url}", lambda: fetch(alexnet, url, folder)))
    failures = []
    for file, how, step in steps:
        try:
            say(f"{file.name}: {how if step() else 'already there'}, SHA-256 matches")
        except WeightsError as error:
            failures.append(str(error))
    if failures:
        raise WeightsError("\n".join(failures))


def _is_pinned(path: Path, file: WeightsFile) -> bool:
    return path.is_file() and sha256_of(path) == file.sha256


def _copy_hashing(source: BinaryIO, target: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest()


def _write_verified(file: WeightsFile, folder: Path, write: Callable[[BinaryIO], str], origin: str) -> None:
    """``write`` (it returns the SHA-256 of what it streamed) into ``folder / file.name`` through a
    temporary file (stages/atomic_files.py), renamed only if size and checksum are the pinned ones;
    else nothing is kept and WeightsError says why."""

    def checked(handle: BinaryIO) -> None:
        got = write(handle)
        size = handle.tell()
        if got != file.sha256 or (file.size is not None and size != file.size):
            sizes = f" ({size:,} bytes, expected {file.size:,})" if file.size is not None and size != file.size else ""
            raise WeightsError(f"{file.name} from {origin}: SHA-256 {got[:12]}..., expected {file.sha256[:12]}...{sizes}; "
                               f"refused, nothing kept")

    atomic_write_with(folder / file.name, checked)
