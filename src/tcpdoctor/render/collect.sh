#!/bin/sh
# tcpdoctor collect: gathers what `tcpdoctor analyze` needs into one tar.gz bundle.
# Written by tcpdoctor @VERSION@ (bundle format @FORMAT_VERSION@): a POSIX shell and the
# usual tools (cat, head, ls, awk, tar, gzip) are enough; ss and ip are used when present.
# It only reads /proc and writes only to a temporary directory and to the bundle: it
# changes nothing on this host. Run it as root for the whole picture (owners, slab sizes).
#
#   sh collect.sh [-i SECONDS] [-d DIR] [--all-netns]
set -u
LC_ALL=C
export LC_ALL
INTERVAL=@DEFAULT_INTERVAL@
OUTDIR=.
ALL_NETNS=0
MAX_BYTES=@MAX_SOCKET_BYTES@
MAX_SECONDS=@MAX_SECONDS@

usage() {
    cat <<'USAGE'
usage: sh collect.sh [-i SECONDS] [-d DIR] [--all-netns]
  -i SECONDS    seconds between the two readings of the kernel counters (default @DEFAULT_INTERVAL@)
  -d DIR        where to write the bundle (default: the current directory)
  --all-netns   also gather every namespace named under /run/netns (root, needs ip)
Then send tcpdoctor-HOST-TIME.tar.gz and run: tcpdoctor analyze tcpdoctor-HOST-TIME.tar.gz
USAGE
}

while [ $# -gt 0 ]; do
    case "$1" in
        -i|--interval) [ $# -ge 2 ] || { usage >&2; exit 2; }; INTERVAL=$2; shift 2 ;;
        -d|--dir) [ $# -ge 2 ] || { usage >&2; exit 2; }; OUTDIR=$2; shift 2 ;;
        --all-netns) ALL_NETNS=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "collect: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$INTERVAL" in
    ''|*[!0-9]*) echo "collect: -i needs whole seconds, got '$INTERVAL'" >&2; exit 2 ;;
esac
if [ "$INTERVAL" -gt 600 ]; then echo "collect: -i is at most 600 seconds" >&2; exit 2; fi
if [ ! -d "$OUTDIR" ] || [ ! -w "$OUTDIR" ]; then
    echo "collect: cannot write to $OUTDIR" >&2; exit 2
fi
OUT=$(cd "$OUTDIR" && pwd) || exit 2

have() { command -v "$1" >/dev/null 2>&1; }
umask 077
HOST=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname 2>/dev/null || echo unknown)
HOST=$(printf '%s' "$HOST" | tr -c 'A-Za-z0-9._-' '_')
NAME="tcpdoctor-$HOST-$(date -u +%Y%m%dT%H%M%SZ)"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tcpdoctor-collect.XXXXXX") || {
    echo "collect: cannot create a temporary directory" >&2; exit 1; }
trap 'rm -rf "$WORK"; rm -f "$OUT/.$NAME.tar.gz.part"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
B="$WORK/$NAME"
mkdir -p "$B/sockets"
START=$(date +%s)

note() { printf '%s\n' "$*" >> "$B/notes.txt"; }
# centiseconds since boot: the two readings are INTERVAL seconds apart at least
now_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }

# grab NS SRC DEST: SRC (at most MAX_BYTES of it) read inside network namespace NS ("" is
# this one); cat-like reads, since /proc files report a size of 0. Missing files are left
# out: analyze says which figures it lacks.
grab() {
    mkdir -p "$(dirname "$3")" || return 1
    if [ -z "$1" ]; then
        head -c "$MAX_BYTES" "$2" > "$3" 2>/dev/null
    else
        ip netns exec "$1" head -c "$MAX_BYTES" "$2" > "$3" 2>/dev/null
    fi || { rm -f "$3"; return 1; }
}

# reading N NS DIR: the counters, read twice INTERVAL seconds apart for rates.
reading() {
    for f in @READING_FILES@; do
        grab "$2" "/proc/$f" "$3/proc/$1/$f" || true
    done
}

# sysctls NS DIR PATH...: the sysctls tcpdoctor's rules read (absent keys are skipped).
sysctls() {
    ns=$1; dir=$2; shift 2
    for p in "$@"; do
        grab "$ns" "/proc/$p" "$dir/proc/1/$p" || true
    done
}

# sockets NS DIR: ss when it exists, and /proc/net/tcp{,6} always (the fallback).
sockets() {
    mkdir -p "$2/sockets"
    if have ss; then
        if [ -z "$1" ]; then ss -tanpoiem 2>/dev/null
        else ip netns exec "$1" ss -tanpoiem 2>/dev/null
        fi | head -c "$MAX_BYTES" > "$2/sockets/ss.txt"
        if [ "$(wc -c < "$2/sockets/ss.txt")" -ge "$MAX_BYTES" ]; then
            note "ss output${1:+ of netns $1} cut at $MAX_BYTES bytes"
        fi
    fi
    for f in @SOCKET_FILES@; do
        grab "$1" "/proc/net/$f" "$2/sockets/$f" || note "/proc/net/$f unreadable${1:+ in netns $1}"
    done
}

# processes: owners (PID INODE per socket descriptor) and open files per process, from one
# `ls -l /proc/PID/fd` per process.
processes() {
    : > "$B/sockets/owners.txt"
    : > "$B/processes.txt"
    denied=0
    for d in /proc/[0-9]*; do
        if [ $(( $(date +%s) - START )) -gt "$MAX_SECONDS" ]; then
            note "process scan stopped after $MAX_SECONDS s: owners and open files are partial"
            break
        fi
        pid=${d#/proc/}
        if ! ls -l "$d/fd" > "$WORK/fd" 2>/dev/null; then
            [ -d "$d" ] && denied=$((denied + 1))
            continue
        fi
        counts=$(awk -v pid="$pid" -v out="$B/sockets/owners.txt" '
            / -> / { fds++ }
            / -> socket:\[/ { s = $NF; gsub(/[^0-9]/, "", s); print pid, s >> out; n++ }
            END { print fds + 0, n + 0 }' "$WORK/fd")
        set -- $counts
        [ "$2" -gt 0 ] || continue
        limit=$(awk '/^Max open files/ { print $4 }' "$d/limits" 2>/dev/null)
        comm=$(tr -c 'A-Za-z0-9._:/\n-' '_' < "$d/comm" 2>/dev/null)
        echo "$pid $1 ${limit:-unknown} ${comm:-?}" >> "$B/processes.txt"
    done
    if [ "$denied" -gt 0 ]; then
        note "the open files of $denied processes could not be read (permission denied): owners of their sockets are unknown"
    fi
}

echo "collect: gathering into $NAME.tar.gz (about $INTERVAL s)" >&2
printf '%s %s\n' "@FORMAT_NAME@" "@FORMAT_VERSION@" > "$B/FORMAT"
{
    echo "format=@FORMAT_VERSION@"
    echo "host=$HOST"
    echo "kernel=$(uname -r 2>/dev/null)"
    echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "interval=$INTERVAL"
    echo "uid=$(id -u 2>/dev/null)"
    echo "page_size=$(getconf PAGESIZE 2>/dev/null || echo 4096)"
    if have ss; then echo "sockets=ss"; else echo "sockets=proc"; fi
    echo "script=@VERSION@"
} > "$B/meta.txt"
have ss || note "ss not found: sockets come from /proc/net/tcp (no timers, tcp_info or buffers)"
[ "$(id -u 2>/dev/null)" = 0 ] || note "not run as root: owners of other users' sockets and slab sizes may be missing"

FIRST=$(now_cs)
reading 1 "" "$B"
sysctls "" "$B" @SYSCTL_PATHS@
for f in @ONCE_FILES@; do grab "" "/proc/$f" "$B/proc/1/$f" || true; done
if [ -r /proc/slabinfo ] && head -c 1 /proc/slabinfo > /dev/null 2>&1; then
    grep -E '^(slabinfo|# name|@SLAB_PATTERN@) ' /proc/slabinfo > "$B/proc/1/slabinfo" 2>/dev/null
else
    note "/proc/slabinfo unreadable (needs root): socket object sizes unknown"
fi
for f in @SYSCTL_FILES@; do
    [ -f "$f" ] && { grab "" "$f" "$B/files$f" || true; }
done
sockets "" "$B"
processes
NETNS=""
if [ "$ALL_NETNS" = 1 ]; then
    if have ip && [ "$(id -u)" = 0 ]; then
        NETNS=$(ip netns list 2>/dev/null | awk '{ print $1 }')
        for ns in $NETNS; do
            reading 1 "$ns" "$B/netns/$ns"
            sysctls "$ns" "$B/netns/$ns" @NETNS_SYSCTL_PATHS@
            sockets "$ns" "$B/netns/$ns"
        done
    else
        note "--all-netns needs root and ip: other namespaces not gathered"
    fi
fi
LEFT=$(( (FIRST + INTERVAL * 100 - $(now_cs) + 99) / 100 ))
if [ "$LEFT" -gt 0 ]; then sleep "$LEFT"; fi
reading 2 "" "$B"
for ns in $NETNS; do reading 2 "$ns" "$B/netns/$ns"; done

(cd "$WORK" && tar -czf "$OUT/.$NAME.tar.gz.part" "$NAME") || {
    echo "collect: could not write the bundle in $OUT" >&2; exit 1; }
mv -f "$OUT/.$NAME.tar.gz.part" "$OUT/$NAME.tar.gz" || exit 1
echo "collect: wrote $OUT/$NAME.tar.gz ($(wc -c < "$OUT/$NAME.tar.gz") bytes); analyze it with: tcpdoctor analyze $NAME.tar.gz" >&2
echo "$OUT/$NAME.tar.gz"
