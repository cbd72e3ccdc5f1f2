#!/usr/bin/env bash
# Installs InstaRecon3D as a systemd service on Debian or Ubuntu, from the source tree this
# script lives in. Run as root:
#
#   sudo deploy/install.sh            # GPU build where nvidia-smi works, else the CPU build
#   sudo deploy/install.sh --uninstall
#
# What it does, each step only if needed (a second run changes nothing and says so):
#   - apt: python3 (3.11 or newer) with venv and headers, gcc, pkg-config, libsystemd-dev
#   - /opt/instarecon/venv      a virtual environment with this project and its heic, sfm, train and
#                               postgresql extras (and systemd-python for the journal fields); where
#                               nvidia-smi lists a GPU, sfm-cuda instead of sfm: pycolmap-cuda12,
#                               COLMAP with CUDA SIFT and matching (one of the two, never both)
#   - /etc/instarecon/instarecon.toml   from deploy/instarecon.example.toml with the folders
#                               below; an edited one is kept, and the new default written beside
#                               it as instarecon.toml.new (an unedited earlier default is replaced)
#   - the user and group instarecon (sysusers.d) and the folders /srv/instarecon/{inbox,outbox}
#     and /var/lib/instarecon (tmpfiles.d)
#   - /etc/systemd/system/instarecon.service, enabled and started
#   - /usr/local/bin/instarecon: the command with the service's configuration, run as its user
#   - LPIPS's weights in /var/lib/instarecon/lpips-weights (`instarecon fetch-weights`: torchvision's
#     AlexNet from download.pytorch.org, checked by SHA-256, and the lpips package's alex.pth); a
#     failed fetch is a warning, not a failed install: LPIPS stays off until the command succeeds
# --uninstall removes the service, its units, the command and /opt/instarecon; it keeps the
# configuration, the data and the user.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: deploy/install.sh [--cpu | --cuda] [--no-start] [--torch-index URL] [--weights-from URL | --no-weights] [--root DIR]
       deploy/install.sh --uninstall [--root DIR]

  --cpu              PyTorch's CPU build (the default where nvidia-smi is missing)
  --cuda             PyTorch's CUDA build from PyPI and gsplat (the default where nvidia-smi is found)
  --no-start         install and enable the service, but do not start or restart it
  --torch-index URL  the package index torch comes from (also $INSTARECON_TORCH_INDEX): by
                     default https://download.pytorch.org/whl/cpu with --cpu, PyPI with --cuda
                     (PyPI's torch is the CUDA build); '' leaves it to pip's configuration
  --weights-from URL a mirror holding alexnet-owt-7be5be79.pth for LPIPS (also $INSTARECON_WEIGHTS_FROM;
                     default https://download.pytorch.org/models/); the checksum stays pinned
  --no-weights       do not fetch LPIPS's weights (later: sudo instarecon fetch-weights)
  --root DIR         install everything under DIR (DIR/opt/instarecon, DIR/etc/instarecon, ...)
                     and touch nothing outside it: no apt, no systemctl, users only in
                     DIR/etc/passwd; the configuration's folders point into DIR. For tests.
  --uninstall        stop and disable the service; remove its units, /usr/local/bin/instarecon
                     and /opt/instarecon; keep /etc/instarecon, /srv/instarecon,
                     /var/lib/instarecon and the user
  PYTHON=/path/to/python3.11  the Python to build the environment with (3.11 or newer)
EOF
}

say() { printf '%s\n' "$*"; }
note() { printf 'note: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY=$SRC/deploy
CPU_TORCH_INDEX=https://download.pytorch.org/whl/cpu
# shellcheck source=gpu-services.sh
. "$DEPLOY/gpu-services.sh"

action=install
flavour=""
start=1
root=""
torch_index_given=0
torch_index=""
weights=1
weights_from=${INSTARECON_WEIGHTS_FROM:-}
if [ -n "${INSTARECON_TORCH_INDEX+set}" ]; then
    torch_index_given=1
    torch_index=$INSTARECON_TORCH_INDEX
fi

while [ $# -gt 0 ]; do
    case $1 in
        --cpu) flavour=cpu ;;
        --cuda) flavour=cuda ;;
        --no-start) start=0 ;;
        --uninstall) action=uninstall ;;
        --root) [ $# -ge 2 ] || die "--root needs a folder"; root=$2; shift ;;
        --root=*) root=${1#--root=} ;;
        --torch-index) [ $# -ge 2 ] || die "--torch-index needs a URL (or '')"; torch_index=$2; torch_index_given=1; shift ;;
        --torch-index=*) torch_index=${1#--torch-index=}; torch_index_given=1 ;;
        --weights-from) [ $# -ge 2 ] || die "--weights-from needs a URL"; weights_from=$2; shift ;;
        --weights-from=*) weights_from=${1#--weights-from=} ;;
        --no-weights) weights=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; printf 'install.sh: unknown option: %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
done

if [ -n "$root" ]; then
    root=$(realpath -m -- "$root")
    [ "$root" != / ] || die "--root / is this system: leave --root out"
    # It goes into the configuration (TOML), a sed expression and a shell script: plain names only.
    [[ $root =~ ^[A-Za-z0-9._/+,=@-]+$ ]] || die "--root: use a folder whose path has only letters, digits and ._/+,=@-"
fi
as_root=0
[ "$(id -u)" = 0 ] && as_root=1
if [ -z "$root" ] && [ $as_root = 0 ]; then
    die "run it as root: sudo $0 $*"
fi

# Where everything goes (under $root with --root).
APP=$root/opt/instarecon
VENV=$APP/venv
STAMP=$VENV/.instarecon-install
CONF_DIR=$root/etc/instarecon
CONF=$CONF_DIR/instarecon.toml
CONF_RECORD=$APP/instarecon.toml.sha256  # the configuration's default as this script last wrote it
UNIT_DIR=$root/etc/systemd/system
UNIT=$UNIT_DIR/instarecon.service
TEMPLATE=$UNIT_DIR/instarecon@.service  # the same unit, one instance per GPU (deploy/gpu-services.sh)
DROPIN=$UNIT_DIR/instarecon@.service.d/gpu.conf
WANTS_DIR=$UNIT_DIR/multi-user.target.wants
COMMAND=$root/usr/local/bin/instarecon
SYSUSERS=$root/usr/lib/sysusers.d/instarecon.conf
TMPFILES=$root/usr/lib/tmpfiles.d/instarecon.conf
INBOX=$root/srv/instarecon/inbox
OUTBOX=$root/srv/instarecon/outbox
STATE=$root/var/lib/instarecon
SERVICE_USER=instarecon

changes=0
changed() { changes=$((changes + 1)); say "  $*"; }

# systemd is the service manager here (not a container or chroot without it)
systemd_running() { [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# Files: written only when their content differs, so that a second run leaves every mtime alone.

# install_file SOURCE DEST MODE [GROUP]: copy SOURCE to DEST if it differs; set mode (and group).
install_file() {
    local source=$1 dest=$2 mode=$3 group=${4:-}
    if [ -f "$dest" ] && cmp -s "$source" "$dest"; then
        set_mode "$dest" "$mode" "$group"
        return 0
    fi
    mkdir -p "$(dirname "$dest")"
    local tmp
    tmp=$(mktemp "$dest.XXXXXX")
    cat "$source" >"$tmp"
    chmod "$mode" "$tmp"
    if [ -n "$group" ] && [ $as_root = 1 ]; then chgrp "$group" "$tmp"; fi
    mv -f "$tmp" "$dest"
    changed "wrote $dest"
}

# set_mode PATH MODE [GROUP]: only when they differ (chmod of an equal mode is no change either,
# but this keeps the report honest).
set_mode() {
    local path=$1 mode=$2 group=${3:-}
    if [ "$(stat -c %a "$path")" != "$(printf '%o' "$((8#$mode))")" ]; then
        chmod "$mode" "$path"
        changed "chmod $mode $path"
    fi
    if [ -n "$group" ] && [ $as_root = 1 ] && [ "$(stat -c %g "$path")" != "$group" ]; then
        chgrp "$group" "$path"
        changed "chgrp $group $path"
    fi
}

# The group's number, from $root/etc/group (the host's with no --root); empty if it is not there.
service_gid() {
    [ -f "$root/etc/group" ] || return 0
    awk -F: -v name="$SERVICE_USER" '$1 == name { print $3 }' "$root/etc/group"
}

# ---------------------------------------------------------------------------------------------
# System packages (not with --root): only the ones missing, so a second run does not touch apt.

apt_packages() {
    [ -z "$root" ] || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        note "no apt-get (not Debian or Ubuntu): make sure Python 3.11+ with venv, gcc, pkg-config and libsystemd's headers are installed"
        return 0
    fi
    local wanted=(python3 python3-venv python3-dev gcc pkg-config libsystemd-dev ca-certificates)
    [ "$flavour" = cuda ] && wanted+=(g++)
    # Ubuntu 22.04's python3 is 3.10: take the python3.11 packages where the system's is older.
    if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        && [ -z "${PYTHON:-}" ]; then
        wanted+=(python3.11 python3.11-venv python3.11-dev)
    fi
    local missing=() package
    for package in "${wanted[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$package")
        fi
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    changed "apt-get install ${missing[*]}"
}

# The Python to build the environment with: $PYTHON, or the first python3.x that is 3.11 or newer
# and has venv. Prints its real path (not a shim's).
find_python() {
    local candidate
    # shellcheck disable=SC2086  # a list of names to try
    for candidate in ${PYTHON:-python3 python3.13 python3.12 python3.11}; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            "$candidate" -c 'import sys; print(sys.executable)'
            return 0
        fi
    done
    die "no Python 3.11 or newer with venv found${PYTHON:+ (PYTHON=$PYTHON)}: on Debian 12 or Ubuntu 24.04 'apt-get install python3-venv'; elsewhere install Python 3.11+ and run with PYTHON=/path/to/python3.11"
}

# ---------------------------------------------------------------------------------------------
# The virtual environment.

# A copy of the source tree, as pip will build it: no VCS data, virtual environments, data
# folders, tests or caches. pip builds in the folder it is given (build/, *.egg-info); building in
# a copy leaves the checkout as it was.
stage_source() {
    local stage=$1 entries=() path name
    for path in "$SRC"/*; do
        name=${path##*/}
        case $name in
            inbox | outbox | state | build | dist | tests | docs | bench | deploy | venv | node_modules | *.egg-info) continue ;;
        esac
        entries+=("$name")
    done
    tar -C "$SRC" -cf - --exclude=__pycache__ --exclude='*.pyc' --exclude=tests --exclude='*.egg-info' \
        --exclude=build --exclude='.*' "${entries[@]}" | tar -C "$stage" -xf -
}

fingerprint() {
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# The requirement for torch in the train extra ("torch==2.13.0"), read from pyproject.toml.
torch_requirement() {
    "$1" - "$2/pyproject.toml" <<'PY'
import re, sys, tomllib
with open(sys.argv[1], "rb") as handle:
    extras = tomllib.load(handle)["project"]["optional-dependencies"]
print(next(r for r in extras["train"] if re.match(r"torch\s*($|[=<>!~;\[])", r)))
PY
}

install_venv() {
    local python stage=$WORK wanted_extras have_stamp=""
    python=$(find_python)
    mkdir "$stage/src"
    stage_source "$stage/src"

    # pycolmap and pycolmap-cuda12 both install the module pycolmap: the GPU build where the
    # driver lists a GPU (it needs one to load its kernels), else the CPU build
    local sfm_extra=sfm other_pycolmap=pycolmap-cuda12
    if nvidia_gpu_listed; then
        sfm_extra=sfm-cuda other_pycolmap=pycolmap
    fi
    wanted_extras=heic,$sfm_extra,train,postgresql
    # systemd-python (journal fields) builds against libsystemd's headers
    if pkg-config --exists libsystemd 2>/dev/null && command -v gcc >/dev/null 2>&1 \
        && "$python" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
        wanted_extras=$wanted_extras,systemd
    fi
    local environment_line source_line
    environment_line="environment python=$python $("$python" -c 'import platform; print(platform.python_version())') flavour=$flavour torch_index=$torch_index"
    source_line="source $(fingerprint "$stage/src") extras=$wanted_extras"
    [ -f "$STAMP" ] && have_stamp=$(cat "$STAMP")

    if [ -x "$VENV/bin/python" ] && [ "$have_stamp" = "$environment_line"$'\n'"$source_line" ]; then
        return 0
    fi
    stop_for_update
    restart_needed=1
    if [ -x "$VENV/bin/python" ] && [ "$(head -n1 "$STAMP" 2>/dev/null)" = "$environment_line" ]; then
        say "updating InstaRecon3D in $VENV"
        "$VENV/bin/python" -m pip uninstall --quiet --yes instarecon3d
    else
        if [ -e "$VENV" ]; then
            say "rebuilding $VENV (another Python or torch build, or an earlier install that did not finish)"
        fi
        rm -rf "$VENV"
        mkdir -p "$APP"
        "$python" -m venv "$VENV"
        changed "created $VENV with $python"
        if [ -n "$torch_index" ]; then
            local torch
            torch=$(torch_requirement "$python" "$stage/src")
            say "installing $torch from $torch_index"
            "$VENV/bin/python" -m pip install --quiet --index-url "$torch_index" "$torch"
        fi
    fi
    if "$VENV/bin/python" -m pip show --quiet "$other_pycolmap" >/dev/null 2>&1; then
        # before the install: removing it afterwards would delete the module files both share
        "$VENV/bin/python" -m pip uninstall --quiet --yes "$other_pycolmap"
        changed "removed $other_pycolmap (the other build of the module pycolmap)"
    fi
    local extras=$wanted_extras
    say "installing InstaRecon3D[$extras] into $VENV with pip (the first time takes a few minutes)"
    if ! "$VENV/bin/python" -m pip install --quiet "$stage/src[$extras]"; then
        # Most likely systemd-python, the one package built from source: try without it.
        if [[ $extras == *,systemd ]] && "$VENV/bin/python" -m pip install --quiet "$stage/src[${extras%,systemd}]"; then
            extras=${extras%,systemd}
            note "installed without systemd-python, which did not build (see above): logs go to stderr with priority prefixes, without the JOB_ID, SET_NAME and STAGE fields"
        else
            die "pip could not install InstaRecon3D into $VENV (see above)"
        fi
    fi
    # LPIPS's linear layers (weights/v0.1/alex.pth) ship in the lpips package; --no-deps, as its declared
    # torchvision must not replace our torch build. Only the file is used: the package is never imported.
    if ! "$VENV/bin/python" -m pip install --quiet --no-deps lpips==0.1.4; then
        note "pip could not install lpips==0.1.4 (see above): LPIPS stays off; install it with $VENV/bin/pip install --no-deps lpips==0.1.4"
    fi
    if "$VENV/bin/python" -m pip show --quiet "$other_pycolmap" >/dev/null 2>&1; then
        die "both pycolmap and pycolmap-cuda12 are installed in $VENV (a dependency asked for $other_pycolmap): they overwrite each other's files; remove both and run this again"
    fi
    say "pycolmap: $("$VENV/bin/python" -c 'import importlib.metadata as m, pycolmap; print(m.packages_distributions()["pycolmap"][0], pycolmap.__version__, "with CUDA" if pycolmap.has_cuda else "(CPU build)")')"
    if [ "$flavour" = cuda ]; then
        local cuda
        cuda=$("$VENV/bin/python" -c 'import torch; print(torch.__version__, torch.version.cuda or "")')
        case $cuda in
            *" ") note "torch ${cuda% } is a CPU build although --cuda was asked for: pip's configuration chose it (pip config list)" ;;
            *) say "torch ${cuda% *} with CUDA ${cuda##* }" ;;
        esac
        if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
            note "no CUDA compiler (nvcc): gsplat compiles its CUDA kernels on the first GPU training and needs the CUDA toolkit (matching torch's CUDA version, in /usr/local/cuda) and g++"
        fi
    fi
    printf '%s\n%s\n' "$environment_line" "$source_line" >"$STAMP"
    changed "installed InstaRecon3D[$extras] into $VENV"
}

# ---------------------------------------------------------------------------------------------
# The configuration: the example with the service's folders (under $root with --root).

render_config() {
    local out=$1
    sed -e "s|^inbox = .*|inbox = \"$INBOX\"|" \
        -e "s|^outbox = .*|outbox = \"$OUTBOX\"|" \
        -e "s|^state = .*|state = \"$STATE\"|" \
        "$DEPLOY/instarecon.example.toml" >"$out"
    if ! { grep -qx "inbox = \"$INBOX\"" "$out" && grep -qx "outbox = \"$OUTBOX\"" "$out" && grep -qx "state = \"$STATE\"" "$out"; }; then
        die "deploy/instarecon.example.toml lacks a top-level 'inbox = ', 'outbox = ' or 'state = ' line"
    fi
}

install_config() {
    local gid rendered installed=""
    gid=$(service_gid)
    rendered=$WORK/instarecon.toml
    render_config "$rendered"
    if [ ! -d "$CONF_DIR" ]; then
        mkdir -p "$CONF_DIR"
        chmod 0755 "$CONF_DIR"
        changed "created $CONF_DIR"
    fi
    [ -f "$CONF_RECORD" ] && installed=$(cat "$CONF_RECORD")
    if [ ! -e "$CONF" ] || cmp -s "$rendered" "$CONF"; then
        install_file "$rendered" "$CONF" 0640 "$gid"
    elif [ "$(sha256sum <"$CONF" | cut -d' ' -f1)" = "$installed" ]; then
        # What an earlier version of this script wrote, never edited: this version's default replaces it.
        say "updating $CONF to this version's default (it was the earlier default, unedited)"
        install_file "$rendered" "$CONF" 0640 "$gid"
        restart_needed=1
    else
        # Edited: never overwritten. The new default goes beside it.
        install_file "$rendered" "$CONF.new" 0640 "$gid"
        note "kept your edited $CONF; the default this version would write is in $CONF.new (diff -u $CONF $CONF.new)"
    fi
    # Remember the default as written, to tell an unedited configuration from an edited one next time.
    local written
    written=$(sha256sum <"$rendered" | cut -d' ' -f1)
    if [ "$written" != "$installed" ] && cmp -s "$rendered" "$CONF"; then
        mkdir -p "$APP"
        printf '%s\n' "$written" >"$CONF_RECORD"
    fi
}

# ---------------------------------------------------------------------------------------------
# The command for operators: /usr/local/bin/instarecon runs the environment's one with the
# service's configuration, as the service's user when root calls it: the job database is SQLite
# in WAL mode, and a -wal or -shm file made by root would lock the daemon out.

install_command() {
    cat >"$WORK/command" <<EOF
#!/bin/sh
# The instarecon command of the InstaRecon3D service, installed by deploy/install.sh: runs
# $VENV/bin/instarecon with the service's configuration (\$INSTARECON_CONFIG
# overrides it), as the user $SERVICE_USER when root calls it, so that whatever it writes into the
# state folder stays the daemon's. Try: sudo instarecon status; sudo instarecon doctor
if [ -z "\${INSTARECON_CONFIG:-}" ]; then
    INSTARECON_CONFIG="$CONF"
    export INSTARECON_CONFIG
fi
if [ "\$(id -u)" = 0 ] && id $SERVICE_USER >/dev/null 2>&1; then
    exec runuser -u $SERVICE_USER -- "$VENV/bin/instarecon" "\$@"
fi
exec "$VENV/bin/instarecon" "\$@"
EOF
    install_file "$WORK/command" "$COMMAND" 0755
}

# LPIPS's weights, once: `instarecon fetch-weights` checks what is there and fetches only what is
# missing or damaged. After the folders and the configuration, as the service's user (the command).
fetch_weights() {
    if [ $weights = 0 ]; then
        note "--no-weights: LPIPS's weights not fetched; LPIPS stays off until: sudo instarecon fetch-weights"
        return 0
    fi
    if "$COMMAND" fetch-weights --check >/dev/null 2>&1; then
        return 0
    fi
    say "fetching LPIPS's weights${weights_from:+ from $weights_from} (244 MB, once)"
    if "$COMMAND" fetch-weights ${weights_from:+--from "$weights_from"}; then
        changed "fetched LPIPS's weights"
    else
        note "LPIPS's weights were not fetched (see above): a warning, not a failed install; jobs run with LPIPS off until 'sudo instarecon fetch-weights${weights_from:+ --from $weights_from}' succeeds"
    fi
}

# ---------------------------------------------------------------------------------------------
# User, folders, units.

install_units() {
    install_file "$DEPLOY/systemd/instarecon.service" "$UNIT" 0644
    install_file "$DEPLOY/systemd/instarecon.service" "$TEMPLATE" 0644
    install_file "$DEPLOY/systemd/instarecon@.service.d/gpu.conf" "$DROPIN" 0644
    install_file "$DEPLOY/systemd/instarecon.sysusers" "$SYSUSERS" 0644
    install_file "$DEPLOY/systemd/instarecon.tmpfiles" "$TMPFILES" 0644
}

create_user() {
    if [ -f "$root/etc/passwd" ] && grep -q "^$SERVICE_USER:" "$root/etc/passwd" \
        && [ -f "$root/etc/group" ] && grep -q "^$SERVICE_USER:" "$root/etc/group"; then
        return 0
    fi
    if [ -n "$root" ]; then
        if [ $as_root = 1 ] && command -v systemd-sysusers >/dev/null 2>&1; then
            mkdir -p "$root/etc"
            systemd-sysusers --root="$root" - <"$SYSUSERS"
            changed "created user $SERVICE_USER in $root/etc/passwd"
        else
            note "user $SERVICE_USER not created (--root without root or without systemd-sysusers): $SYSUSERS is installed"
        fi
        return 0
    fi
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers "$SYSUSERS"
    else
        adduser --system --group --home /var/lib/instarecon --no-create-home --shell /usr/sbin/nologin \
            --gecos "InstaRecon3D daemon" "$SERVICE_USER" >/dev/null
    fi
    changed "created user $SERVICE_USER"
}

# One line per folder of the tmpfiles file: path, mode, owner and group (or "missing").
folder_state() {
    local type path rest
    while read -r type path rest; do
        [ "$type" = d ] || continue
        stat -c '%n %a %u %g' "$root$path" 2>/dev/null || say "$root$path missing"
    done <"$DEPLOY/systemd/instarecon.tmpfiles"
}

create_folders() {
    local before after
    before=$(folder_state)
    if [ $as_root = 1 ] && command -v systemd-tmpfiles >/dev/null 2>&1 && [ -n "$(service_gid)" ]; then
        if [ -n "$root" ]; then
            systemd-tmpfiles --create --root="$root" - <"$TMPFILES"
        else
            systemd-tmpfiles --create "$TMPFILES"
        fi
    else
        # Without systemd-tmpfiles (or root): the same folders and modes, owned by whoever runs this.
        local type path mode user group rest
        while read -r type path mode user group rest; do
            [ "$type" = d ] || continue
            mkdir -p "$root$path"
            chmod "$mode" "$root$path"
            if [ $as_root = 1 ] && [ -z "$root" ]; then chown "$user:$group" "$path"; fi
        done <"$TMPFILES"
    fi
    after=$(folder_state)
    if [ "$before" != "$after" ]; then
        changed "folders: $INBOX $OUTBOX $STATE"
    fi
}

# The daemon's services systemd has loaded now: the plain one and any instance, one per line.
loaded_services() {
    systemctl list-units --all --plain --no-legend 'instarecon.service' 'instarecon@*.service' 2>/dev/null \
        | awk '{print $1}'
}

# Before the environment changes under a running daemon: stop it (enable_service starts it again).
stop_for_update() {
    [ $start = 1 ] && systemd_running || return 0
    local service
    for service in $(loaded_services); do
        if systemctl is-active --quiet "$service"; then
            systemctl stop "$service"
            changed "stopped $service for the update (it starts again below)"
        fi
    done
}

# The [Install] section's WantedBy= link of a service, as systemctl enable makes it.
wants_link() { echo "$WANTS_DIR/$1"; }
unit_of() { case $1 in instarecon@*) echo /etc/systemd/system/instarecon@.service ;; *) echo /etc/systemd/system/$1 ;; esac; }

# Enable (and start) $SERVICES, one per GPU or the plain one; disable the others: a host whose GPUs
# were added or removed, or that changed between --cpu and --cuda, runs what it has now.
enable_service() {
    local service link
    if [ -n "$root" ]; then
        # What systemctl enable and disable would do, by hand: the WantedBy= links.
        for link in "$WANTS_DIR"/instarecon.service "$WANTS_DIR"/instarecon@*.service; do
            if [ -L "$link" ] && ! printf '%s\n' $SERVICES | grep -qx "${link##*/}"; then
                rm -f "$link"
                changed "disabled ${link##*/} ($link)"
            fi
        done
        for service in $SERVICES; do
            link=$(wants_link "$service")
            if [ "$(readlink "$link" 2>/dev/null)" != "$(unit_of "$service")" ]; then
                mkdir -p "$WANTS_DIR"
                ln -sfn "$(unit_of "$service")" "$link"
                changed "enabled $service ($link)"
            fi
        done
        return 0
    fi
    if systemd_running && [ "$units_changed" -gt 0 ]; then
        systemctl daemon-reload
    fi
    for service in instarecon.service $(systemctl list-unit-files --plain --no-legend 'instarecon@*.service' \
            2>/dev/null | awk '$2 == "enabled" {print $1}') $(loaded_services); do
        if ! printf '%s\n' $SERVICES | grep -qx "$service" && systemctl is-enabled --quiet "$service" 2>/dev/null; then
            systemctl disable --quiet --now "$service"
            changed "disabled and stopped $service"
        fi
    done
    for service in $SERVICES; do
        if ! systemctl is-enabled --quiet "$service" 2>/dev/null; then
            systemctl enable --quiet "$service"
            changed "enabled $service"
        fi
    done
    if ! systemd_running; then
        note "systemd is not running here: the service starts at the next boot"
        return 0
    fi
    for service in $SERVICES; do
        if [ $start = 0 ]; then
            if [ "$restart_needed" = 1 ] && systemctl is-active --quiet "$service"; then
                note "--no-start: $service goes on with what it had; systemctl restart $service to use this version"
            fi
        elif systemctl is-active --quiet "$service"; then
            if [ "$restart_needed" = 1 ]; then
                systemctl restart "$service"
                changed "restarted $service"
            fi
        else
            if ! systemctl start "$service"; then
                die "$service did not start: systemctl status $service; journalctl -u ${service%.service} -n 50"
            fi
            changed "started $service"
        fi
    done
}

# ---------------------------------------------------------------------------------------------

nvidia_gpu_listed() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

do_install() {
    if [ -z "$flavour" ]; then
        if nvidia_gpu_listed; then
            flavour=cuda
            say "nvidia-smi sees a GPU: installing the CUDA build (--cpu for the CPU build)"
        else
            flavour=cpu
            say "no working nvidia-smi: installing the CPU build (--cuda for the GPU build)"
        fi
    fi
    if [ "$torch_index_given" = 0 ] && [ "$flavour" = cpu ]; then
        torch_index=$CPU_TORCH_INDEX
    fi
    SERVICES=$(service_names "$flavour")
    if [ "$SERVICES" != instarecon.service ]; then
        say "one daemon per GPU nvidia-smi lists: $(echo $SERVICES)"
    fi
    say "installing InstaRecon3D from $SRC${root:+ under $root}"

    apt_packages
    install_venv
    local before=$changes
    install_units
    units_changed=$((changes - before))
    [ "$units_changed" = 0 ] || restart_needed=1
    install_file "$SRC/README.md" "$APP/README.md" 0644  # the unit's Documentation=
    local page
    for page in "$SRC"/docs/*.md "$SRC"/docs/*.png; do  # the README's links, and the manual itself
        if [ -f "$page" ]; then install_file "$page" "$APP/docs/${page##*/}" 0644; fi
    done
    install_command
    create_user
    create_folders
    install_config
    fetch_weights
    enable_service

    say ""
    if [ "$changes" = 0 ]; then
        say "nothing changed: InstaRecon3D is installed as this version installs it${root:+ under $root}"
    else
        say "done ($changes changes)."
    fi
    say "  configuration  $CONF"
    say "  photo sets     $INBOX/<set>/  (drop a READY file to start at once)"
    say "  results        $OUTBOX/  (the website: index.html, health.html)"
    say "  job database   $STATE/"
    say "  check it       sudo ${root:+$root/usr/local/bin/}instarecon doctor"
    if [ -z "$root" ]; then
        say "  watch it       systemctl status 'instarecon*'; journalctl -u 'instarecon*' -f"
    fi
}

do_uninstall() {
    say "uninstalling the InstaRecon3D service${root:+ under $root}"
    local service link file
    if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
        for service in instarecon.service $(systemctl list-unit-files --plain --no-legend 'instarecon@*.service' \
                2>/dev/null | awk '$2 == "enabled" {print $1}') $(loaded_services); do
            if systemctl is-enabled --quiet "$service" 2>/dev/null; then
                systemctl disable --quiet "$service"
                changed "disabled $service"
            fi
            if systemd_running && systemctl is-active --quiet "$service"; then
                systemctl stop "$service"
                changed "stopped $service"
            fi
        done
    fi
    for link in "$WANTS_DIR"/instarecon.service "$WANTS_DIR"/instarecon@*.service; do
        if [ -L "$link" ]; then
            rm -f "$link"
            changed "removed $link"
        fi
    done
    if [ -d "$WANTS_DIR" ]; then rmdir --ignore-fail-on-non-empty "$WANTS_DIR"; fi
    if [ -e "$DROPIN" ]; then
        rm -f "$DROPIN"
        rmdir --ignore-fail-on-non-empty "$(dirname "$DROPIN")"
        changed "removed $DROPIN"
    fi
    for file in "$UNIT" "$TEMPLATE" "$SYSUSERS" "$TMPFILES" "$COMMAND"; do
        if [ -e "$file" ]; then
            rm -f "$file"
            changed "removed $file"
        fi
    done
    if [ -e "$APP" ]; then
        rm -rf "${APP:?}"
        changed "removed $APP"
    fi
    if systemd_running; then
        systemctl daemon-reload
    fi
    say ""
    if [ "$changes" = 0 ]; then
        say "nothing changed: the service was not installed${root:+ under $root}"
    else
        say "done ($changes changes)."
    fi
    say "kept: the configuration ($CONF_DIR), the photo sets and results ($root/srv/instarecon), the job"
    say "database and work folders ($STATE) and the user $SERVICE_USER. To remove them too:"
    say "  rm -r $CONF_DIR $root/srv/instarecon $STATE${root:+ # and the user in $root/etc/passwd}"
    if [ -z "$root" ]; then
        say "  userdel $SERVICE_USER"
    fi
}

units_changed=0
restart_needed=0
WORK=$(mktemp -d)  # the staged source and the rendered configuration
trap 'rm -rf "$WORK"' EXIT
if [ "$action" = uninstall ]; then
    do_uninstall
else
    do_install
fi
