"""Settings: read once from TOML, defaults and command-line overrides, validated at start.

Every problem ends the start with one line naming the key and what is wrong, because
an operator reads it in ``systemctl status`` where only the last line shows.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from stages.base import STAGE_NAMES
from stages.registry import PIPELINE

CONFIG_ENV = "INSTARECON_CONFIG"
WATCH_MODES = ("native", "polling")
SFM_MAPPERS = ("incremental", "global")
TRAIN_BACKENDS = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")
NOTIFY_EVENTS = ("done", "failed", "cancelled")  # job states a notification can be sent for
SMTP_SECURITY = ("starttls", "ssl", "none")

# Each stage's own limit (stages/registry.py) unless the configuration sets another
DEFAULT_STAGE_TIMEOUTS = {spec.name: float(spec.default_timeout_seconds) for spec in PIPELINE}


EXIT_CONFIG = 78  # EX_CONFIG: the unit file tells systemd not to restart on it


class ConfigError(Exception):
    """A setting that stops the daemon from starting; str() is the one line to show."""


@dataclass(frozen=True)
class Settings:
    inbox: Path = Path("inbox")
    outbox: Path = Path("outbox")
    state: Path = Path("state")  # job database and per-job work folders
    database_url: str = ""  # empty: SQLite in the state folder
    host_name: str = ""  # this daemon's name; empty: the machine's host name (<host>:<pid> while that is taken)
    lease_seconds: float = 60.0  # a running job whose daemon stops renewing for this long is taken over
    watch_mode: str = "native"  # "polling" for network shares written by other hosts
    poll_interval_seconds: float = 2.0  # polling observer only
    settle_seconds: float = 60.0  # a set with no change for this long is complete
    ready_quiet_seconds: float = 5.0  # a set holding READY is complete once unchanged for this long
    rescan_interval_seconds: float = 300.0  # full inbox rescan: the net under lost events
    ignore_patterns: tuple[str, ...] = ()  # junk names, added to the built-in list
    threads: int = 0  # worker threads for stages; 0 means one per CPU core
    max_image_pixels: int = 178_956_970  # larger photos are refused (decompression bombs)
    # memory (MB) ingest's threads may fill with photos being decoded; 0: a quarter of the service's
    # (its cgroup's memory.max, systemd's MemoryMax=, else the machine's MemTotal)
    ingest_memory_mb: float = 0.0
    zip_max_bytes: int = 20 * 1024**3  # uncompressed size limit of a .zip set
    zip_max_files: int = 10_000
    max_photos: int = 500  # a set with more photos fails before any heavy stage
    max_file_mb: float = 50.0  # a photo larger than this fails its set (before any heavy stage)
    max_set_mb: float = 5000.0  # a set larger than this in total fails (before any heavy stage)
    min_free_gb: float = 2.0  # no stage starts while the state or outbox folder has less free space
    space_wait_hold_minutes: float = 15.0  # a job waiting for disk space holds up the jobs behind it this long at most
    keep_work_days: float = 7.0  # work folders of done (and cancelled) jobs are removed after this long
    keep_failed_days: float = 30.0  # work folders of failed jobs are kept this long, for a look at what went wrong
    unpublish_removed: bool = False  # true: a set deleted from the inbox takes its published page with it
    stage_timeouts: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_STAGE_TIMEOUTS))
    cancel_grace_seconds: float = 10.0  # SIGTERM, then SIGKILL after this long
    heartbeat_seconds: float = 30.0  # how often the daemon rewrites <outbox>/health.json
    metrics_textfile: str = ""  # a .prom file for node_exporter's textfile collector; empty: none
    log_level: str = "info"
    sfm_exhaustive_max_images: int = 100  # above: sequential matching with loop detection
    sfm_mapper: str = "incremental"  # or "global" (pycolmap's GLOMAP port)
    sfm_min_registered_fraction: float = 0.6  # below: the job passes with a warning
    sfm_vocab_tree_path: str = ""  # a local vocabulary tree for loop detection; never downloaded
    train_backend: str = "auto"  # "cuda" where PyTorch sees a GPU, else "cpu"; or force one
    train_iterations: int = 30_000  # on a GPU, unless job.toml sets iterations
    train_cpu_iterations: int = 3_000  # on the CPU, unless job.toml sets iterations
    train_cpu_max_image_size: int = 800  # CPU training reads photos downsized to this long side
    train_max_gaussians: int = 3_000_000  # densification stops growing the model here (GPU)
    train_cpu_max_gaussians: int = 500_000  # the same on the CPU, where memory and time are scarcer
    trainer_command: tuple[str, ...] = ()  # empty: our trainer; else a 3DGS-compatible CLI
    lpips_weights: str = ""  # folder with the LPIPS AlexNet weights; empty: the torch cache
    publish_outlier_k: int = 20  # neighbours per Gaussian when judging floaters before publishing
    publish_outlier_std_ratio: float = 2.0  # floaters: mean neighbour distance beyond mean + this x std
    publish_min_cluster_fraction: float = 0.05  # smaller separate groups of Gaussians are removed
    # splat budgets of the viewer's device profiles (desktop, mid-memory, phone: device-profile.js): a scene with
    # more Gaussians also gets a coarser, whole .sog of at most each budget, which such a device loads instead
    publish_levels: tuple[int, ...] = (3_000_000, 1_500_000, 600_000)
    public_url: str = ""  # the outbox's address as users reach it: page_url in status.json, links in notifications
    notify_on: tuple[str, ...] = ("done", "failed")  # job states that send a notification
    notify_webhook_url: str = ""  # empty: no webhook; else a JSON POST per event
    notify_webhook_headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold a token
    notify_email_to: tuple[str, ...] = ()  # empty: no e-mail
    notify_email_from: str = ""  # empty: instarecon@<this host's name>
    smtp_host: str = ""  # the mail server; needed when notify_email_to is set
    smtp_port: int = 587
    smtp_security: str = "starttls"  # or "ssl" (implicit TLS, usually port 465) or "none"
    smtp_username: str = ""  # empty: no login
    smtp_password_file: str = ""  # a file holding the SMTP password (never the TOML itself)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state / 'jobs.sqlite3'}"

    @property
    def jobs_dir(self) -> Path:
        return self.state / "jobs"

    def stage_settings(self) -> dict[str, Any]:
        """The part of the settings a stage's child process sees."""
        return {
            "threads": self.threads or (os.cpu_count() or 1),
            "max_image_pixels": self.max_image_pixels,
            "ingest_memory_mb": self.ingest_memory_mb,  # 0 is resolved in the stage, in the service's cgroup
            "zip_max_bytes": self.zip_max_bytes,
            "zip_max_files": self.zip_max_files,
            "max_photos": self.max_photos,
            "max_file_mb": self.max_file_mb,
            "max_set_mb": self.max_set_mb,
            "ignore_patterns": list(self.ignore_patterns),
            "sfm_exhaustive_max_images": self.sfm_exhaustive_max_images,
            "sfm_mapper": self.sfm_mapper,
            "sfm_min_registered_fraction": self.sfm_min_registered_fraction,
            "sfm_vocab_tree_path": self.sfm_vocab_tree_path,
            "train_backend": self.train_backend,
            "train_iterations": self.train_iterations,
            "train_cpu_iterations": self.train_cpu_iterations,
            "train_cpu_max_image_size": self.train_cpu_max_image_size,
            "train_max_gaussians": self.train_max_gaussians,
            "train_cpu_max_gaussians": self.train_cpu_max_gaussians,
            "trainer_command": list(self.trainer_command),
            "lpips_weights": self.lpips_weights,
            "publish_outlier_k": self.publish_outlier_k,
            "publish_outlier_std_ratio": self.publish_outlier_std_ratio,
            "publish_min_cluster_fraction": self.publish_min_cluster_fraction,
            "publish_levels": list(self.publish_levels),
        }


_PATH_KEYS = ("inbox", "outbox", "state")
_CHOICES = {"watch_mode": WATCH_MODES, "sfm_mapper": SFM_MAPPERS, "train_backend": TRAIN_BACKENDS, "log_level": LOG_LEVELS,
            "smtp_security": SMTP_SECURITY}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)


def _expect(key: str, value: Any, kind: type | tuple[type, ...], description: str) -> None:
    # bool is an int in Python; a setting that wants a number must not take true/false
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"setting '{key}' must be {description}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"setting '{key}' must be {description}, got {value!r}")


def _positive_number(key: str, value: Any, description: str) -> float:
    _expect(key, value, (int, float), description)
    if value <= 0:
        raise ConfigError(f"setting '{key}' must be greater than 0, got {value!r}")
    return float(value)


def _zero_or_more(key: str, value: Any, description: str) -> float:
    _expect(key, value, (int, float), description)
    if value < 0:
        raise ConfigError(f"setting '{key}' must be 0 or more, got {value!r}")
    return float(value)


def _validated(key: str, value: Any) -> Any:
    if key in _PATH_KEYS:
        _expect(key, value, str, "a folder path (string)")
        return Path(value)
    if key in ("database_url",):
        _expect(key, value, str, "a string such as 'postgresql://user@host/db'")
        return value
    if key == "host_name":
        _expect(key, value, str, "a name such as 'gpu-1', or empty for the machine's host name")
        return value
    if key in ("sfm_vocab_tree_path", "lpips_weights", "metrics_textfile"):
        _expect(key, value, str, "a path (string), or empty")
        return value
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ConfigError(f"setting '{key}' must be one of {', '.join(_CHOICES[key])}, got {value!r}")
        return value
    if key == "trainer_command":
        if not isinstance(value, list) or not all(isinstance(part, str) and part for part in value):
            raise ConfigError(f"setting 'trainer_command' must be a list of strings such as ['python3', 'train.py'], got {value!r}")
        return tuple(value)
    if key in ("sfm_min_registered_fraction", "publish_min_cluster_fraction"):
        _expect(key, value, (int, float), "a fraction between 0 and 1")
        if not 0 <= value <= 1:
            raise ConfigError(f"setting '{key}' must be between 0 and 1, got {value!r}")
        return float(value)
    if key == "publish_outlier_std_ratio":
        return _positive_number(key, value, "a number of standard deviations")
    if key in ("max_file_mb", "max_set_mb"):
        return _positive_number(key, value, "a number of megabytes")
    if key == "ready_quiet_seconds":
        return _zero_or_more(key, value, "a number of seconds (0: READY counts at once)")
    if key == "ingest_memory_mb":
        return _zero_or_more(key, value, "a number of megabytes (0: a quarter of the service's memory)")
    if key in ("min_free_gb",):
        return _zero_or_more(key, value, "a number of gigabytes (0 turns the check off)")
    if key == "space_wait_hold_minutes":
        return _zero_or_more(key, value, "a number of minutes (0: jobs behind a waiting one run at once)")
    if key in ("keep_work_days", "keep_failed_days"):
        return _positive_number(key, value, "a number of days")
    if key == "unpublish_removed":
        _expect(key, value, bool, "true or false")
        return value
    if key in ("poll_interval_seconds", "settle_seconds", "rescan_interval_seconds", "cancel_grace_seconds",
               "heartbeat_seconds", "lease_seconds"):
        return _positive_number(key, value, "a number of seconds")
    if key in ("threads", "max_image_pixels", "zip_max_bytes", "zip_max_files", "max_photos", "sfm_exhaustive_max_images",
               "train_iterations", "train_cpu_iterations", "train_cpu_max_image_size", "train_max_gaussians",
               "train_cpu_max_gaussians", "publish_outlier_k"):
        _expect(key, value, int, "a whole number")
        if value < 0 or (value == 0 and key != "threads"):
            raise ConfigError(f"setting '{key}' must be a positive whole number, got {value!r}")
        return value
    if key == "publish_levels":
        if not isinstance(value, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value):
            raise ConfigError(f"setting 'publish_levels' must be a list of splat counts such as [1500000, 600000], got {value!r}")
        return tuple(sorted(set(value), reverse=True))
    if key == "ignore_patterns":
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise ConfigError(f"setting 'ignore_patterns' must be a list of glob patterns, got {value!r}")
        return tuple(value)
    if key == "stage_timeouts":
        if not isinstance(value, dict):
            raise ConfigError(f"setting 'stage_timeouts' must be a table of stage = seconds, got {value!r}")
        timeouts = dict(DEFAULT_STAGE_TIMEOUTS)
        for stage, seconds in value.items():
            if stage not in STAGE_NAMES:
                raise ConfigError(
                    f"unknown stage 'stage_timeouts.{stage}' (stages: {', '.join(STAGE_NAMES)})"
                )
            _expect(f"stage_timeouts.{stage}", seconds, (int, float), "a number of seconds")
            if seconds <= 0:
                raise ConfigError(f"setting 'stage_timeouts.{stage}' must be greater than 0, got {seconds!r}")
            timeouts[stage] = float(seconds)
        return timeouts
    if key in _NOTIFY_KEYS:
        return _validated_notify(key, value)
    known = ", ".join(f.name for f in fields(Settings))
    raise ConfigError(f"unknown setting '{key}' (known settings: {known})")


_NOTIFY_KEYS = ("public_url", "notify_on", "notify_webhook_url", "notify_webhook_headers", "notify_email_to",
                "notify_email_from", "smtp_host", "smtp_port", "smtp_username", "smtp_password_file")


def _web_address(key: str, value: Any, example: str) -> str:
    """Empty, or an absolute http(s) URL."""
    if not isinstance(value, str) or (value and not _is_http_url(value)):
        raise ConfigError(f"setting '{key}' must be an http:// or https:// address such as '{example}', or empty, got {value!r}")
    return value


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return False
    # ASCII only (http.client sends nothing else): an international name in its xn-- form
    return parts.scheme in ("http", "https") and bool(parts.hostname) and value.isascii() and value.isprintable() \
        and " " not in value


def _is_mail_address(value: Any) -> bool:
    """user@domain, or 'Name <user@domain>'; one address, nothing that could break a header."""
    if not isinstance(value, str) or any(c in value for c in "\r\n,;"):
        return False
    address = value.rsplit("<", 1)[1].rstrip() if value.rstrip().endswith(">") and "<" in value else value
    address = address.removesuffix(">").strip()
    user, at, domain = address.rpartition("@")
    return bool(at and user and domain) and not any(c.isspace() or c in "<>" for c in address)


def _is_ipv6(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _validated_notify(key: str, value: Any) -> Any:
    if key == "public_url":
        value = _web_address(key, value, "https://splats.example.org/")
        return value if not value or value.endswith("/") else value + "/"
    if key == "notify_webhook_url":
        return _web_address(key, value, "https://hooks.example.org/instarecon")
    if key == "notify_on":
        if not isinstance(value, list) or not all(isinstance(v, str) and v in NOTIFY_EVENTS for v in value):
            raise ConfigError(f"setting 'notify_on' must be a list of job states out of {', '.join(NOTIFY_EVENTS)}, got {value!r}")
        return tuple(dict.fromkeys(value))
    if key == "notify_webhook_headers":
        if not isinstance(value, dict):
            raise ConfigError(f"setting 'notify_webhook_headers' must be a table of header = value, got a {type(value).__name__}")
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ConfigError(f"setting 'notify_webhook_headers' has a bad header name {name!r}")
            if not isinstance(text, str) or not text.isascii() or not text.isprintable():
                # the value may be a secret: name the header, never show the value
                raise ConfigError(f"setting 'notify_webhook_headers.{name}' must be one line of ASCII text")
        return dict(value)
    if key == "notify_email_to":
        if not isinstance(value, list) or not all(_is_mail_address(v) for v in value):
            raise ConfigError(f"setting 'notify_email_to' must be a list of e-mail addresses such as ['ops@example.org'], got {value!r}")
        return tuple(value)
    if key == "notify_email_from":
        if not (value == "" or _is_mail_address(value)):
            raise ConfigError(f"setting 'notify_email_from' must be an e-mail address such as 'InstaRecon3D <instarecon@example.org>', or empty, got {value!r}")
        return value
    if key == "smtp_host":
        if not isinstance(value, str) or any(c.isspace() or c in "/@" for c in value) or (":" in value and not _is_ipv6(value)):
            raise ConfigError(f"setting 'smtp_host' must be a host name or address such as 'mail.example.org', got {value!r}")
        return value
    if key == "smtp_port":
        _expect(key, value, int, "a port number")
        if not 1 <= value <= 65535:
            raise ConfigError(f"setting 'smtp_port' must be a port number from 1 to 65535, got {value!r}")
        return value
    if key == "smtp_username":
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"setting 'smtp_username' must be a string on one line, got {value!r}")
        return value
    # smtp_password_file
    _expect(key, value, str, "a path (string) to a file holding the password, or empty")
    return value


def _check_combinations(settings: Settings) -> None:
    """Settings that only make sense together."""
    if settings.notify_email_to and not settings.smtp_host:
        raise ConfigError("setting 'smtp_host' must be set when 'notify_email_to' is (the mail server to send through)")
    if settings.smtp_username and not settings.smtp_password_file:
        raise ConfigError("setting 'smtp_password_file' must be set when 'smtp_username' is (a file holding the password)")
    if settings.smtp_password_file and not settings.smtp_username:
        raise ConfigError("setting 'smtp_username' must be set when 'smtp_password_file' is")


def load_settings(
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the TOML file (``--config`` or $INSTARECON_CONFIG), then overrides.

    Relative folders in the file are taken relative to the file, so a configuration
    means the same thing whatever the working directory of the service.
    """
    environ = os.environ if environ is None else environ
    if config_path is None and environ.get(CONFIG_ENV):
        config_path = Path(environ[CONFIG_ENV])
    values: dict[str, Any] = {}
    if config_path is not None:
        config_path = Path(config_path)
        try:
            document = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file {config_path} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"configuration file {config_path} cannot be read: {error}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"configuration file {config_path} is not valid TOML: {error}") from None
        for key, value in document.items():
            values[key] = _validated(key, value)
            if key in _PATH_KEYS and not values[key].is_absolute():
                values[key] = config_path.parent / values[key]
            if key == "smtp_password_file" and values[key] and not Path(values[key]).is_absolute():
                values[key] = str(config_path.parent / values[key])
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _validated(key, value)
    settings = Settings(**values)
    _check_combinations(settings)
    password_file = settings.smtp_password_file
    return Settings(
        **{
            **{f.name: getattr(settings, f.name) for f in fields(Settings)},
            **{key: Path(os.path.abspath(getattr(settings, key))) for key in _PATH_KEYS},
            "smtp_password_file": os.path.abspath(password_file) if password_file else "",
        }
    )


def check_folders(settings: Settings) -> None:
    """The inbox must be readable; outbox and state writable. The state folder is ours: made if missing.
    The SMTP password file, when set, must be readable (checked here, where only ``run`` looks,
    because other commands may run as users who must not read it)."""
    inbox = settings.inbox
    if not inbox.is_dir():
        raise ConfigError(f"inbox folder {inbox} does not exist (create it or set 'inbox')")
    if not os.access(inbox, os.R_OK | os.X_OK):
        raise ConfigError(f"inbox folder {inbox} is not readable by this user")
    if not settings.outbox.is_dir():
        raise ConfigError(f"outbox folder {settings.outbox} does not exist (create it or set 'outbox')")
    _check_writable("outbox", settings.outbox)
    if not settings.state.exists():
        try:
            settings.state.mkdir(mode=0o750)
        except OSError as error:
            raise ConfigError(f"state folder {settings.state} does not exist and cannot be made: {error.strerror}") from None
    if not settings.state.is_dir():
        raise ConfigError(f"state folder {settings.state} is not a folder")
    _check_writable("state", settings.state)
    if settings.smtp_password_file:
        try:
            with open(settings.smtp_password_file, "rb"):
                pass
        except OSError as error:
            raise ConfigError(
                f"setting 'smtp_password_file': {settings.smtp_password_file} cannot be read: {error.strerror}"
            ) from None


def _check_writable(name: str, folder: Path) -> None:
    """Try a real write: os.access says yes to root even on a read-only mount."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".instarecon-write-test-", dir=folder)
    except OSError as error:
        raise ConfigError(f"{name} folder {folder} is not writable: {error.strerror}") from None
    os.close(handle)
    os.unlink(probe)
