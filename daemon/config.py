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
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from stages.lpips_weights import weights_folder
from stages.registry import PIPELINE

CONFIG_ENV = "INSTARECON_CONFIG"
WATCH_MODES = ("native", "polling")
SFM_MAPPERS = ("incremental", "global")
TRAIN_BACKENDS = ("auto", "cpu", "cuda")
# the trainer's --strategy (gaussian_splatting/gsplat_strategy.py STRATEGIES; the daemon never imports it)
TRAIN_STRATEGIES = ("ours", "default", "mcmc")
LOG_LEVELS = ("debug", "info", "warning", "error")
NOTIFY_EVENTS = ("done", "failed", "cancelled")  # job states a notification can be sent for
SMTP_SECURITY = ("starttls", "ssl", "none")

# Each stage's own limit (stages/registry.py) unless the configuration sets another
DEFAULT_STAGE_TIMEOUTS = {spec.name: float(spec.default_timeout_seconds) for spec in PIPELINE}


EXIT_CONFIG = 78  # EX_CONFIG: the unit file tells systemd not to restart on it


class ConfigError(Exception):
    """A setting that stops the daemon from starting; str() is the one line to show."""


def setting(default: Any = MISSING, doc: str = "", *, factory: Any = MISSING, see: str = "", repr: bool = True) -> Any:
    """A Settings field that carries its meaning: docs/configuration.md is written from these (make docs),
    so the page an operator reads cannot drift from the code. ``see`` links a docs/ page that says more; a table
    with a default per key gets a row per key, its ``doc`` naming the key as ``{key}``."""
    return field(default=default, default_factory=factory, repr=repr, metadata={"doc": doc, "see": see})


@dataclass(frozen=True)
class Settings:
    inbox: Path = setting(Path("inbox"), "Where people drop photo sets, one folder or `.zip` per set. Only read, except "
                          "for the status.json the daemon writes into each set.", see="dropping-sets.md")
    outbox: Path = setting(Path("outbox"), "The static website (gallery, viewer pages, results) and each job's "
                           "status.json; serve it with any web server.", see="website.md")
    state: Path = setting(Path("state"), "The job database (SQLite, unless `database_url` is set) and the per-job work "
                          "folders; made if missing.")
    database_url: str = setting("", "SQLAlchemy URL of the job store, e.g. `postgresql://instarecon@db.example/instarecon`, "
                                "which several daemons on several GPU hosts share. Empty: SQLite at `<state>/jobs.sqlite3`.",
                                see="several-hosts.md")
    host_name: str = setting("", "This daemon's name in the jobs it runs and in status.json. Empty: the machine's host "
                             "name, or `<host>:<pid>` while a live daemon has that. A name a live daemon holds is "
                             "refused (exit code 78).", see="several-hosts.md#how-they-share-the-work")
    lease_seconds: float = setting(60.0, "A running job whose daemon stops renewing its lease for this long (it died, or "
                                   "lost the database) is taken over by another daemon and resumed from its last finished "
                                   "stage. A daemon cut off from the database for 80 % of this stops its stage itself, so "
                                   "a longer lease rides out longer outages but takes over more slowly.",
                                   see="several-hosts.md#when-postgresql-goes-away")
    watch_mode: str = setting("native", "`native` (inotify) or `polling`. Use `polling` when the inbox is a network share "
                              "(NFS, SMB) written by other hosts: inotify never sees their writes.",
                              see="operating.md#dropping-photos-over-smb")
    poll_interval_seconds: float = setting(2.0, "How often the polling observer looks at the inbox (`watch_mode = "
                                           "\"polling\"` only).")
    settle_seconds: float = setting(60.0, "A set without a READY file is complete once nothing in it has changed for this "
                                    "long; a set missing from the inbox for this long is removed.",
                                    see="dropping-sets.md#dropping-photos")
    ready_quiet_seconds: float = setting(5.0, "A set holding a READY file is complete once unchanged for this long "
                                         "(0: at once).", see="dropping-sets.md#dropping-photos")
    rescan_interval_seconds: float = setting(300.0, "A full rescan of the inbox, the net under lost events; one also "
                                             "runs at every start.")
    ignore_patterns: tuple[str, ...] = setting((), "Names never taken as photos, added to the built-in list (`.DS_Store`, "
                                               "`._*`, `Thumbs.db`, ...): glob patterns, any case, e.g. "
                                               "`[\"*.xmp\", \"*.aae\"]`.", see="dropping-sets.md#dropping-photos")
    threads: int = setting(0, "Worker threads for stages; 0: one per CPU core.")
    max_image_pixels: int = setting(178_956_970, "Photos with more pixels are refused (decompression bombs).")
    ingest_memory_mb: float = setting(0.0, "Memory, in MB, that ingest's threads may fill with photos being decoded at "
                                      "once; a photo that alone needs more is rejected. 0: a quarter of the memory the "
                                      "service may use (its cgroup's `memory.max`, the unit's `MemoryMax=`, else the "
                                      "machine's total).", see="dropping-sets.md#memory")
    zip_max_bytes: int = setting(20 * 1024**3, "A `.zip` set larger than this, in bytes uncompressed, is refused.")
    zip_max_files: int = setting(10_000, "A `.zip` set with more entries than this is refused.")
    max_photos: int = setting(500, "A set with more photos fails before any heavy stage.", see="dropping-sets.md#limits")
    max_file_mb: float = setting(50.0, "A photo larger than this, in MB (1,000,000 bytes), fails its set before any heavy "
                                 "stage.", see="dropping-sets.md#limits")
    max_set_mb: float = setting(5000.0, "A set whose photos take more than this in total, in MB (a `.zip` set's "
                                "uncompressed), fails before any heavy stage.", see="dropping-sets.md#limits")
    min_free_gb: float = setting(2.0, "Free space, in GB, kept in the state and outbox folders on top of what a job's "
                                 "stages still ahead will write; a job that does not fit waits. 0: the estimate alone.",
                                 see="operating.md#disk-space")
    space_wait_hold_minutes: float = setting(15.0, "A job waiting for disk space holds up the jobs behind it this long at "
                                             "most; then those that fit run (0: at once).", see="operating.md#disk-space")
    keep_work_days: float = setting(7.0, "The work folders of done, cancelled and removed jobs are removed this many days "
                                    "after the job ended.", see="operating.md#retention")
    keep_failed_days: float = setting(30.0, "The work folders of failed jobs are kept this long, for a look at what went "
                                      "wrong.", see="operating.md#retention")
    unpublish_removed: bool = setting(False, "true: a set deleted from the inbox takes its jobs' pages and results out of "
                                      "the outbox; false: they stay, listed as removed.",
                                      see="dropping-sets.md#removing-a-set")
    stage_timeouts: Mapping[str, float] = setting(factory=lambda: dict(DEFAULT_STAGE_TIMEOUTS),
                                                  doc="Seconds the {key} stage may run; a stage running longer is stopped "
                                                  "and its job fails.")
    cancel_grace_seconds: float = setting(10.0, "SIGTERM to a stage's process group, then SIGKILL after this long.")
    heartbeat_seconds: float = setting(30.0, "How often the daemon rewrites `<outbox>/health.json` and its row in the job "
                                       "store; a heartbeat older than three of these means it is down or stuck.",
                                       see="operating.md#watching-it")
    metrics_textfile: str = setting("", "A `.prom` file for node_exporter's textfile collector (an absolute path in a "
                                    "folder the daemon may write); empty: none.", see="operating.md#watching-it")
    log_level: str = setting("info", "`debug`, `info`, `warning` or `error`.")
    sfm_exhaustive_max_images: int = setting(100, "Structure from motion matches every pair of photos up to this many; "
                                             "above, each photo with its neighbours in name order.",
                                             see="pipeline.md#structure-from-motion")
    sfm_mapper: str = setting("incremental", "`incremental` (COLMAP) or `global` (pycolmap's GLOMAP port: faster on large "
                              "sets).")
    sfm_min_registered_fraction: float = setting(0.6, "A smaller share of photos placed in the scene passes with a warning "
                                                 "naming the rest.")
    sfm_vocab_tree_path: str = setting("", "A COLMAP vocabulary tree file: turns on loop detection for sets above "
                                       "`sfm_exhaustive_max_images`. Never downloaded; empty: no loop detection.")
    train_backend: str = setting("auto", "`auto`: `cuda` where PyTorch sees a GPU, else `cpu`; or `cpu` or `cuda` to force "
                                 "one.", see="pipeline.md#training-and-evaluation")
    train_iterations: int = setting(30_000, "Training iterations on a GPU, unless job.toml sets `iterations`.")
    train_cpu_iterations: int = setting(3_000, "Training iterations on the CPU, unless job.toml sets `iterations`.")
    train_cpu_max_image_size: int = setting(800, "CPU training reads photos downsized to this long side, in pixels "
                                            "(job.toml: `train_max_image_size`).")
    train_max_gaussians: int = setting(3_000_000, "Densification adds no Gaussians beyond this many on a GPU (job.toml: "
                                       "`max_gaussians`).")
    train_cpu_max_gaussians: int = setting(500_000, "The same on the CPU, where memory and time are scarcer.")
    train_strategy: str = setting("ours", "Who adds and removes Gaussians on a GPU: `ours` (the 3DGS paper's densification), "
                                  "or gsplat's `default` or `mcmc` (job.toml: `train_strategy`). The CPU always trains "
                                  "with `ours`.", see="training.md#densification-strategies")
    trainer_command: tuple[str, ...] = setting((), "Another trainer with the 3DGS reference trainer's flags, e.g. "
                                               "`[\"python3\", \"/opt/gaussian-splatting/train.py\"]`; empty: ours.")
    lpips_weights: str = setting("", "A folder holding the LPIPS AlexNet weights (`alexnet-owt-7be5be79.pth`, "
                                 "`alex.pth`); empty: `lpips-weights` in `state`. `instarecon fetch-weights` puts them "
                                 "there (deploy/install.sh runs it); without them LPIPS is null.",
                                 see="pipeline.md#training-and-evaluation")
    publish_outlier_k: int = setting(20, "Neighbours per Gaussian when judging floaters before publishing.",
                                     see="pipeline.md#publishing")
    publish_outlier_std_ratio: float = setting(2.0, "Floaters: Gaussians whose mean neighbour distance lies beyond the "
                                               "mean plus this many standard deviations. Lower removes more.")
    publish_min_cluster_fraction: float = setting(0.05, "Separate groups of Gaussians holding less than this fraction of "
                                                  "the rest are removed. Higher removes more.")
    publish_levels: tuple[int, ...] = setting((3_000_000, 1_500_000, 600_000),
                                              "Splat budgets of the viewer's device profiles (desktops, mid-memory devices, "
                                              "phones: device-profile.js): a scene "
                                              "with more Gaussians also gets a coarser `.sog` of at most that many "
                                              "(`scene.lod1.sog`, ...), which such a device loads instead. `[]`: none.",
                                              see="pipeline.md#publishing")
    public_url: str = setting("", "The outbox's address as people reach it, e.g. `https://splats.example.org/`: "
                              "`page_url` in status.json, links in notifications. Empty: no links.")
    private_by_default: bool = setting(False, "true: every job is private unless its job.toml says `private = false`: "
                                       "its page is in a folder named with a random 128-bit key, left out of the "
                                       "gallery, `jobs.json` and `health.json`, and reached by the link in the "
                                       "status.json beside its set alone. false: only jobs whose job.toml says "
                                       "`private = true`.", see="website.md#private-scenes")
    notify_on: tuple[str, ...] = setting(("done", "failed"), "Job states that send a notification: `done`, `failed`, "
                                         "`cancelled`.", see="operating.md#notifications")
    notify_webhook_url: str = setting("", "A JSON POST to this address per event; empty: no webhook.")
    notify_webhook_headers: Mapping[str, str] = setting(factory=dict, repr=False,  # may hold a token
                                                        doc="Extra HTTP headers on every webhook POST, as a table, e.g. "
                                                        "`Authorization = \"Bearer ...\"`; the file then holds a secret.")
    notify_email_to: tuple[str, ...] = setting((), "E-mail addresses to send each event to; empty: no e-mail.")
    notify_email_from: str = setting("", "The sender; empty: `instarecon@<this host's name>`.")
    smtp_host: str = setting("", "The mail server; needed when `notify_email_to` is set.")
    smtp_port: int = setting(587, "The mail server's port.")
    smtp_security: str = setting("starttls", "`starttls`, `ssl` (implicit TLS, usually port 465) or `none` (a relay on "
                                 "localhost or a trusted network only).")
    smtp_username: str = setting("", "Log in with this user name; empty: no login.")
    smtp_password_file: str = setting("", "A file holding the SMTP password, one line, readable by the daemon's user only "
                                      "(never the TOML itself); needed with `smtp_username`.")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state / 'jobs.sqlite3'}"

    @property
    def jobs_dir(self) -> Path:
        return self.state / "jobs"

    @property
    def lpips_weights_dir(self) -> Path:
        """Where LPIPS's weights are looked for and fetched to."""
        return weights_folder(self.lpips_weights, self.state)

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
            "train_strategy": self.train_strategy,
            "trainer_command": list(self.trainer_command),
            "lpips_weights": str(self.lpips_weights_dir),
            "publish_outlier_k": self.publish_outlier_k,
            "publish_outlier_std_ratio": self.publish_outlier_std_ratio,
            "publish_min_cluster_fraction": self.publish_min_cluster_fraction,
            "publish_levels": list(self.publish_levels),
        }


# How docs/configuration.md groups the settings: every field in exactly one group, in the order shown.
SETTING_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Folders and the job store", ("inbox", "outbox", "state", "database_url")),
    ("Intake", ("watch_mode", "poll_interval_seconds", "settle_seconds", "ready_quiet_seconds", "rescan_interval_seconds",
                "ignore_patterns")),
    ("Limits", ("max_photos", "max_file_mb", "max_set_mb", "max_image_pixels", "ingest_memory_mb", "zip_max_bytes",
                "zip_max_files")),
    ("Running jobs", ("threads", "stage_timeouts", "cancel_grace_seconds", "host_name", "lease_seconds")),
    ("Disk space and retention", ("min_free_gb", "space_wait_hold_minutes", "keep_work_days", "keep_failed_days",
                                  "unpublish_removed")),
    ("Structure from motion", ("sfm_exhaustive_max_images", "sfm_vocab_tree_path", "sfm_mapper",
                               "sfm_min_registered_fraction")),
    ("Training and evaluation", ("train_backend", "train_iterations", "train_cpu_iterations", "train_cpu_max_image_size",
                                 "train_max_gaussians", "train_cpu_max_gaussians", "train_strategy", "trainer_command",
                                 "lpips_weights")),
    ("Publishing and the website", ("publish_outlier_k", "publish_outlier_std_ratio", "publish_min_cluster_fraction",
                                    "publish_levels", "public_url", "private_by_default")),
    ("Notifications", ("notify_on", "notify_webhook_url", "notify_webhook_headers", "notify_email_to", "notify_email_from",
                       "smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password_file")),
    ("Logging and monitoring", ("log_level", "heartbeat_seconds", "metrics_textfile")),
)

_PATH_KEYS = ("inbox", "outbox", "state")
_CHOICES = {"watch_mode": WATCH_MODES, "sfm_mapper": SFM_MAPPERS, "train_backend": TRAIN_BACKENDS,
            "train_strategy": TRAIN_STRATEGIES, "log_level": LOG_LEVELS,
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
    if key in ("unpublish_removed", "private_by_default"):
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
            if stage not in DEFAULT_STAGE_TIMEOUTS:
                raise ConfigError(
                    f"unknown stage 'stage_timeouts.{stage}' (stages: {', '.join(DEFAULT_STAGE_TIMEOUTS)})"
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
