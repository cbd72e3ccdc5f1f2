#!/usr/bin/env bash
# Upload a folder of photos into an InstaRecon3D inbox with rsync, then drop the READY marker, so the
# daemon starts the set as soon as (and only when) every photo is there.
#
#   deploy/upload-with-rsync.sh [--no-ready] PHOTOS_FOLDER INBOX [SET_NAME] [-- RSYNC_OPTION...]
#
#   deploy/upload-with-rsync.sh ~/Pictures/garden photos.example.org:/srv/instarecon/inbox
#   deploy/upload-with-rsync.sh ./shots alice@gpu-box:/srv/instarecon/inbox kermit -- --bwlimit=20m
#   RSYNC_RSH="ssh -p 2222" deploy/upload-with-rsync.sh ./shots gpu-box:/srv/instarecon/inbox
#
# INBOX is any rsync destination: host:path (over ssh), rsync://host/module/path, or a local
# folder. The set is INBOX/SET_NAME (by default the photo folder's name). Running it again is
# safe: rsync sends only what is missing or changed; the daemon runs a changed set again as a new
# attempt, an unchanged one not at all.
#
# What it does, and why:
#  1. rsync the photos into INBOX/SET_NAME/. rsync writes each file under a temporary hidden name
#     (.IMG_0001.jpg.Xy12Ab) and renames it when it is complete; the daemon never takes such a
#     name for a photo, only for activity. It also removes a READY marker an earlier upload left
#     in the set, before the first photo arrives: otherwise the daemon would start the set at the
#     first new photo. Nothing else on the server is ever deleted (every other name is protected,
#     and --max-delete caps it). Hidden files, desktop litter (Thumbs.db, desktop.ini) and the
#     control files (READY, CANCEL, RETRY, status.json) in PHOTOS_FOLDER are not sent.
#     No --partial, -P, --inplace, --append or --delay-updates: each of those leaves an
#     unfinished file under its real name in the set, where the daemon would count it as a photo
#     (a --partial-dir is a hidden folder, which the daemon never looks into, but is not needed). An interrupted upload leaves no half file
#     (or, if rsync is killed hard, only its hidden temporary) and no marker; run the script
#     again. Until then the photos that did arrive are a set like any other: left unchanged for
#     settle_seconds, the daemon starts it, and the completed set later runs as a new attempt.
#     Modes: folders 2770 and files 0640 whatever they were here, so the daemon, in the inbox's
#     group, reads the photos and writes status.json beside them. The uploading account on the
#     server must be in that group (usermod -aG instarecon alice).
#  2. Only once rsync has succeeded, send an empty file named READY into the set (rsync again,
#     so it works wherever step 1 did, with no shell access needed): the marker comes last, so
#     the daemon starts the set at once and never before the last photo. With --no-ready, or if
#     step 1 fails, there is no marker; the daemon then starts the set after settle_seconds
#     (60 s) without a change in it.
#
# Needs rsync 3.1 or newer on both ends (apt-get install rsync; on a Mac, Homebrew's: the rsync
# 2.6.9 that macOS ships lacks --info and numeric --chmod) and bash 3.2 or newer.
set -euo pipefail

usage() {
    echo "usage: $(sed -n '5s/^# *//p' "$0")" >&2
    exit 2
}

ready=1
if [ "${1:-}" = "--no-ready" ]; then
    ready=0
    shift
fi
[ $# -ge 2 ] || usage
photos=$1
inbox=${2%/}
shift 2
name=
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    name=$1
    shift
fi
if [ $# -gt 0 ]; then
    [ "$1" = "--" ] || usage
    shift
fi
extra=("$@")  # (the ${a[@]+"${a[@]}"} forms below: empty arrays under set -u in macOS's bash 3.2)

[ -d "$photos" ] || { echo "upload-with-rsync: $photos is not a folder" >&2; exit 2; }
command -v rsync >/dev/null || { echo "upload-with-rsync: rsync is missing (apt-get install rsync)" >&2; exit 2; }
if [ -z "$name" ]; then
    name=$(cd -- "$photos" && pwd -P)
    name=${name##*/}
fi
case $name in
    "" | */* | .* | *.part | *.tmp | *status.json)
        echo "upload-with-rsync: '$name' cannot be a set name (no '/', no leading '.', no temporary suffix)" >&2
        exit 2 ;;
esac
set_folder="$inbox/$name"

# The control files' names, in any case, at the top of the set.
READY_NAME='/[Rr][Ee][Aa][Dd][Yy]'
filters=(
    # Sender side ("hide"): what is never sent.
    --filter='H .*'                       # hidden files and folders (.DS_Store, ._*, .ready, ...)
    --filter='H [Tt]humbs.db'
    --filter='H [Dd]esktop.ini'
    --filter="H $READY_NAME"              # sent last, in step 2
    --filter='H /[Cc][Aa][Nn][Cc][Ee][Ll]'
    --filter='H /[Rr][Ee][Tt][Rr][Yy]'
    --filter='H /status.json'             # the daemon's, from an earlier run
    # Receiver side: an old READY marker (or .ready) may be deleted; nothing else, ever.
    --filter="R $READY_NAME"
    --filter='R /.[Rr][Ee][Aa][Dd][Yy]'
    --filter='P *'
)
progress=()
if [ -t 1 ]; then progress=(--info=progress2); fi

echo "upload-with-rsync: $photos/ -> $set_folder/"
rsync --recursive --times --copy-links --perms --chmod=D2770,F0640 \
    --delete-before --max-delete=2 "${filters[@]}" \
    --human-readable --info=stats1 ${progress[@]+"${progress[@]}"} ${extra[@]+"${extra[@]}"} \
    -- "${photos%/}/" "$set_folder/"

if [ $ready = 0 ]; then
    echo "upload-with-rsync: photos sent; no READY marker (--no-ready): the daemon starts the set once it has not changed for settle_seconds"
    exit 0
fi
marker_folder=$(mktemp -d)
trap 'rm -rf -- "$marker_folder"' EXIT
: > "$marker_folder/READY"
rsync --times --perms --chmod=F0640 ${extra[@]+"${extra[@]}"} -- "$marker_folder/READY" "$set_folder/READY"
echo "upload-with-rsync: photos sent, READY placed: the daemon starts '$name' now (its progress: $set_folder/status.json)"
