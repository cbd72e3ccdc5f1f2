"""LPIPS's weights fetched once, from a local HTTP server serving stand-in files: a file of the
pinned checksum is kept and the evaluation's LPIPS loads it; a wrong checksum, a cut-short
download or a server that is down is refused in a line, with nothing left behind; the doctor
says whether they are there; the lpips package's file is found without importing the package."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.config import Settings
from daemon.doctor import check_lpips_weights
from stages import lpips_weights
from stages.lpips_weights import ALEXNET, LINEAR, WeightsError, fetch, fetch_all
from tests.daemon_harness import REPO


@pytest.fixture
def server(tmp_path):
    """An HTTP server in a thread serving ``served/``; yields (its base URL, that folder)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/models/", served
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        return super().translate_path(path.removeprefix("/models"))

    def log_message(self, *args) -> None:
        pass


class _CutShortHandler(_QuietHandler):
    """Promises the whole file, sends half of it, hangs up."""

    def do_GET(self) -> None:
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cli(*args: str, state: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'gaussian-splatting'}"}
    env.pop("INSTARECON_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args, "--state", str(state)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _stand_in_weights(folder: Path) -> tuple[Path, Path]:
    """An AlexNet-shaped state dict and lpips-shaped linear layers of random numbers, as torch saves them."""
    import torch

    from gaussian_splatting.lpips import CHANNELS

    generator = torch.Generator().manual_seed(7)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    alexnet = {}
    for index, shape in shapes.items():
        alexnet[f"features.{index}.weight"] = torch.randn(shape, generator=generator) * 0.05
        alexnet[f"features.{index}.bias"] = torch.zeros(shape[0])
    linear = {f"lin{i}.model.1.weight": torch.rand((1, c, 1, 1), generator=generator) for i, c in enumerate(CHANNELS)}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(alexnet, folder / ALEXNET.name)
    torch.save(linear, folder / "stand-in-alex.pth")
    return folder / ALEXNET.name, folder / "stand-in-alex.pth"


def _spec(pinned, path: Path):
    data = path.read_bytes()
    return replace(pinned, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def test_fetched_weights_are_kept_and_the_evaluation_s_lpips_uses_them(server, tmp_path):
    import torch

    from gaussian_splatting.lpips import Lpips, load_lpips

    base_url, served = server
    alexnet_file, linear_file = _stand_in_weights(served)
    alexnet, linear = _spec(ALEXNET, alexnet_file), _spec(LINEAR, linear_file)
    folder = tmp_path / "state" / "lpips-weights"
    said: list[str] = []
    fetch_all(folder, base_url, alexnet=alexnet, linear=linear, linear_source=linear_file, say=said.append)
    assert said == ["alex.pth: copied from the lpips package, SHA-256 matches",
                    f"{ALEXNET.name}: fetched from {base_url}{ALEXNET.name}, SHA-256 matches"]
    assert sorted(path.name for path in folder.iterdir()) == sorted([ALEXNET.name, LINEAR.name])  # no temporaries
    assert (folder / ALEXNET.name).read_bytes() == alexnet_file.read_bytes()
    assert lpips_weights.problems(folder, (alexnet, linear)) == []
    # a second time fetches nothing
    (served / ALEXNET.name).unlink()
    fetch_all(folder, base_url, alexnet=alexnet, linear=linear, linear_source=linear_file, say=said.append)
    assert said[2:] == ["alex.pth: already there, SHA-256 matches", f"{ALEXNET.name}: already there, SHA-256 matches"]

    metric = load_lpips(folder)
    assert isinstance(metric, Lpips), metric
    image = torch.rand((40, 48, 3), generator=torch.Generator().manual_seed(1))
    assert metric(image, image) == 0.0
    assert metric(image, image.flip(0)) > 0.0


def test_a_wrong_checksum_is_refused_and_nothing_is_left(server, tmp_path):
    base_url, served = server
    (served / ALEXNET.name).write_bytes(os.urandom(4096))  # not torchvision's AlexNet
    state = tmp_path / "state"
    result = _cli("fetch-weights", "--from", base_url, state=state)
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    refused = [line for line in lines if line.startswith(f"instarecon: {ALEXNET.name} from {base_url}{ALEXNET.name}: ")]
    assert len(refused) == 1, result.stderr
    got = hashlib.sha256((served / ALEXNET.name).read_bytes()).hexdigest()
    assert f"SHA-256 {got[:12]}..., expected 7be5be791159..." in refused[0] and "refused, nothing kept" in refused[0]
    assert not (state / "lpips-weights" / ALEXNET.name).exists()
    assert [path.name for path in (state / "lpips-weights").iterdir() if ALEXNET.name in path.name] == []


def test_a_download_cut_short_is_refused_and_nothing_is_left(tmp_path):
    served = tmp_path / "served"
    alexnet_file, _ = _stand_in_weights(served)
    alexnet = _spec(ALEXNET, alexnet_file)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_CutShortHandler, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    folder = tmp_path / "weights"
    folder.mkdir()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/models/{ALEXNET.name}"
    try:
        half = f"{alexnet.size // 2:,} bytes, expected {alexnet.size:,}"
        with pytest.raises(WeightsError, match=rf"^{ALEXNET.name} from {url}: SHA-256 .* \({half}\); refused, nothing kept$"):
            fetch(alexnet, url, folder)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert list(folder.iterdir()) == []


def test_a_server_that_is_down_is_reported_and_nothing_is_left(tmp_path):
    base_url = f"http://127.0.0.1:{_unused_port()}/models/"
    state = tmp_path / "state"
    result = _cli("fetch-weights", "--from", base_url, state=state)
    assert result.returncode == 1, result
    assert f"instarecon: cannot fetch {ALEXNET.name} from {base_url}{ALEXNET.name}: " in result.stderr
    assert "Connection refused" in result.stderr
    assert "LPIPS stays off" in result.stderr
    assert [path.name for path in (state / "lpips-weights").iterdir() if ALEXNET.name in path.name] == []


def test_a_missing_file_on_the_mirror_is_reported_with_the_http_status(server, tmp_path):
    base_url, _ = server
    result = _cli("fetch-weights", "--from", base_url, state=tmp_path / "state")
    assert result.returncode == 1
    assert f"cannot fetch {ALEXNET.name} from {base_url}{ALEXNET.name}: HTTP 404" in result.stderr


def test_the_lpips_package_file_is_found_without_importing_the_package(tmp_path, monkeypatch):
    package = tmp_path / "site" / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('importing lpips imports torchvision')\n")
    (package / "weights" / "v0.1" / "alex.pth").write_bytes(b"not the v0.1 layers")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert lpips_weights.lpips_package_file() == package / "weights" / "v0.1" / "alex.pth"
    assert "lpips" not in sys.modules
    folder = tmp_path / "weights"
    folder.mkdir()
    with pytest.raises(WeightsError, match=r"alex\.pth from .*: SHA-256 \w{12}\.\.\., expected df73285e35b2\.\.\."):
        lpips_weights.copy_linear(folder)
    assert list(folder.iterdir()) == []


def test_the_doctor_says_whether_the_weights_are_there_and_how_to_fetch_them(tmp_path):
    settings = Settings(state=tmp_path / "state")
    missing = check_lpips_weights(settings)
    assert not missing.ok and not missing.required
    assert f"{ALEXNET.name} missing in {tmp_path / 'state' / 'lpips-weights'}" in missing.detail
    assert "`instarecon fetch-weights` fetches them" in missing.detail
    (tmp_path / "state" / "lpips-weights").mkdir(parents=True)
    (tmp_path / "state" / "lpips-weights" / ALEXNET.name).write_bytes(b"damaged")
    damaged = check_lpips_weights(settings)
    assert "expected 7be5be791159... (damaged or another file)" in damaged.detail
    # the setting overrides the state folder
    elsewhere = check_lpips_weights(Settings(state=tmp_path / "state", lpips_weights=str(tmp_path / "mine")))
    assert f"missing in {tmp_path / 'mine'}" in elsewhere.detail
    shown = _cli("doctor", state=tmp_path / "state")
    assert any(line.startswith("note  lpips weights") and "instarecon fetch-weights" in line
               for line in shown.stdout.splitlines()), shown.stdout
