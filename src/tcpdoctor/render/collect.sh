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
# Compared as text before any arithmetic: shells disagree on numbers past 64 bits (dash
# wraps, bash overflows, BusyBox saturates), so an overlong value never reaches [ -gt ].
while :; do case "$INTERVAL" in 0?*) INTERVAL=${INTERVAL#0} ;; *) break ;; esac; done
if [ "${#INTERVAL}" -gt 3 ] || [ "$INTERVAL" -gt 600 ]; then
    echo "collect: -i is at most 600 seconds, got '$INTERVAL'" >&2; exit 2
fi
if [ ! -d "$OUTDIR" ] || [ ! -w "$OUTDIR" ]; then
    echo "collect: cannot write to $OUTDIR" >&2; exit 2
fi
OUT=$(cd "$OUTDIR" && pwd) || exit 2

have() { command -v "$1" >/dev/null 2>&1; }
umask 077
HOST=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname 2>/dev/null || echo unknown)
HOST=$(printf '%s' "$HOST" | tr -c 'A-Za-z0-9._-' '_')
NAME="tcpdoctor-$HOST-$(date -u +%Y%m%dT%H%M%SZ)"
TMP=${TMPDIR:-/tmp}
WORK=$(mktemp -d "$TMP/tcpdoctor-collect.XXXXXX") || {
    echo "collect: cannot create a temporary directory in $TMP (set TMPDIR)" >&2; exit 1; }
trap 'rm -rf "$WORK"; rm -f "$OUT/.$NAME.tar.gz.part"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
B="$WORK/$NAME"
START=$(date +%s)
FULL=""

# Writes are checked: a full TMPDIR must not give an empty bundle and exit 0. A reserve
# written first is given back when a write fails, so that the note saying so still fits.
nospace() {
    echo "collect: no space left in TMPDIR ($TMP) while writing $1; set TMPDIR to a directory with room" >&2
}
# probe: can a new file still get a block? (a fresh name each time: rewriting an old one
# would reuse its own block and always succeed)
probe() {
    printf 'probe\n' > "$WORK/.probe" 2>/dev/null && [ -s "$WORK/.probe" ]
    set -- $?
    rm -f "$WORK/.probe"
    return "$1"
}
# written WHAT: called after a write that failed or may have; stops gathering when out of space
written() {
    [ -z "$FULL" ] || return 1
    probe && return 0
    FULL=$1
    rm -f "$WORK/.reserve"
    nospace "$1"
    printf '%s\n' "collection stopped: no space left in the temporary directory while writing $1; this bundle is incomplete" >> "$B/notes.txt"
    return 1
}
if ! head -c 65536 /dev/zero > "$WORK/.reserve" 2>/dev/null || ! mkdir -p "$B/sockets" 2>/dev/null || ! probe; then
    nospace "its first files"; exit 1
fi

note() { printf '%s\n' "$*" >> "$B/notes.txt" 2>/dev/null || written notes.txt; }
# centiseconds since boot: the two readings are INTERVAL seconds apart at least
# uptime_cs [FILE]: the uptime in FILE (a copy, or /proc/uptime now) in centiseconds
uptime_cs() { awk '{ printf "%d\n", $1 * 100 }' "${1:-/proc/uptime}"; }

# in_ns NS CMD...: CMD in the namespace (the caller's when NS is empty). Its variable has
# a name of its own: sh functions share their callers' variables.
in_ns() {
    in_ns_name=$1; shift
    if [ -z "$in_ns_name" ]; then "$@"; else ip netns exec "$in_ns_name" "$@"; fi
}

# grab NS SRC DEST: SRC (at most MAX_BYTES of it) read inside network namespace NS ("" is
# this one); cat-like reads, since /proc files report a size of 0. Missing files are left
# out: analyze says which figures it lacks.
grab() {
    [ -z "$FULL" ] || return 1
    mkdir -p "$(dirname "$3")" 2>/dev/null || { written "${3#"$B"/}"; return 1; }
    in_ns "$1" head -c "$MAX_BYTES" "$2" > "$3" 2>/dev/null && return 0
    written "${3#"$B"/}"  # before the partial file is removed, which would free its blocks
    rm -f "$3"
    return 1
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
    [ -z "$FULL" ] || return 0
    mkdir -p "$2/sockets" 2>/dev/null || { written "${2#"$B"}/sockets"; return 0; }
    if have ss; then
        in_ns "$1" ss -tanpoiem 2>/dev/null | head -c "$MAX_BYTES" > "$2/sockets/ss.txt" 2>/dev/null || written "${2#"$B"/}sockets/ss.txt" || return 0
        if [ "$(wc -c < "$2/sockets/ss.txt")" -ge "$MAX_BYTES" ]; then
            note "ss output${1:+ of netns $1} cut at $MAX_BYTES bytes"
        fi
    fi
    for f in @SOCKET_FILES@; do
        grab "$1" "/proc/net/$f" "$2/sockets/$f" || note "/proc/net/$f unreadable${1:+ in netns $1}"
    done
    conntrack_table "$1" "$2"
}

# conntrack_table NS DIR: the conntrack table (`conntrack -L`, else /proc/net/nf_conntrack),
# the namespace's addresses (which say where an entry's ends live) and its NAT rules (the
# port ranges SNAT picks from).
conntrack_table() {
    [ -z "$FULL" ] || return 0
    # The file exists only when the table could be read: empty then means an empty table.
    if have conntrack && in_ns "$1" conntrack -C >/dev/null 2>&1; then
        in_ns "$1" conntrack -L 2>/dev/null | head -c "$MAX_BYTES" > "$2/sockets/conntrack.txt" 2>/dev/null \
            || written "${2#"$B"/}sockets/conntrack.txt" || return 0
    elif [ -r /proc/net/nf_conntrack ]; then
        grab "$1" /proc/net/nf_conntrack "$2/sockets/conntrack.txt" || true
    fi
    in_ns "$1" ip -o addr show 2>/dev/null | head -c "$MAX_BYTES" > "$2/sockets/addresses.txt" 2>/dev/null || true
    if have nft; then
        in_ns "$1" nft -j list ruleset 2>/dev/null | head -c "$MAX_BYTES" > "$2/sockets/nft.json" 2>/dev/null || true
    fi
    if have iptables-save; then
        in_ns "$1" iptables-save -t nat 2>/dev/null | head -c "$MAX_BYTES" > "$2/sockets/iptables-nat.txt" 2>/dev/null || true
    fi
}

# processes: owners (PID INODE per socket descriptor) and open files per process, from one
# `ls -l /proc/PID/fd` per process.
processes() {
    [ -z "$FULL" ] || return 0
    { : > "$B/sockets/owners.txt" && : > "$B/processes.txt"; } 2>/dev/null || { written processes.txt; return 0; }
    denied=0
    for d in /proc/[0-9]*; do
        [ -z "$FULL" ] || return 0
        if [ $(( $(date +%s) - START )) -gt "$MAX_SECONDS" ]; then
            note "process scan stopped after $MAX_SECONDS s: owners and open files are partial"
            break
        fi
        pid=${d#/proc/}
        if ! ls -l "$d/fd" > "$WORK/fd" 2>/dev/null; then
            written "the open files of process $pid" || return 0
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
        echo "$pid $1 ${limit:-unknown} ${comm:-?}" >> "$B/processes.txt" 2>/dev/null \
            || { written processes.txt; return 0; }
    done
    written sockets/owners.txt || return 0
    if [ "$denied" -gt 0 ]; then
        note "the open files of $denied processes could not be read (permission denied): owners of their sockets are unknown"
    fi
}

echo "collect: gathering into $NAME.tar.gz (about $INTERVAL s)" >&2
{ printf '%s %s\n' "@FORMAT_NAME@" "@FORMAT_VERSION@" > "$B/FORMAT"; } 2>/dev/null || {
    nospace FORMAT; exit 1; }
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
} > "$B/meta.txt" 2>/dev/null || { nospace meta.txt; exit 1; }
have ss || note "ss not found: sockets come from /proc/net/tcp (no timers, tcp_info or buffers)"
[ "$(id -u 2>/dev/null)" = 0 ] || note "not run as root: owners of other users' sockets and slab sizes may be missing"

FIRST=$(uptime_cs)
reading 1 "" "$B"
# analyze takes the interval between the two copies of /proc/uptime: wait from the first
# copy, which a slow first reading (cold caches, a busy host) can take well after FIRST.
COPIED=$(uptime_cs "$B/proc/1/uptime" 2>/dev/null)
case "$COPIED" in ''|*[!0-9]*) ;; *) FIRST=$COPIED ;; esac
sysctls "" "$B" @SYSCTL_PATHS@
for f in @ONCE_FILES@; do grab "" "/proc/$f" "$B/proc/1/$f" || true; done
if [ -r /proc/slabinfo ] && head -c 1 /proc/slabinfo > /dev/null 2>&1; then
    grep -E '^(slabinfo|# name|@SLAB_PATTERN@) ' /proc/slabinfo > "$B/proc/1/slabinfo" 2>/dev/null \
        || written proc/1/slabinfo || true
else
    note "/proc/slabinfo unreadable (needs root): socket object sizes unknown"
fi
for f in @SYSCTL_FILES@; do
    [ -f "$f" ] && { grab "" "$f" "$B/files$f" || true; }
done
sockets "" "$B"
processes
# Namespace names are read a line at a time, never word-split or globbed: a name is used
# only when it is a plain file name under /run/netns (letters, digits, . _ -), once.
NETNS="$WORK/netns.safe"
: > "$NETNS" 2>/dev/null || written "the namespace list"
if [ "$ALL_NETNS" = 1 ] && [ -z "$FULL" ]; then
    if have ip && [ "$(id -u)" = 0 ]; then
        ip netns list 2>/dev/null | sed 's/ (id: [0-9]*)$//' | awk '!seen[$0]++' > "$WORK/netns.all" 2>/dev/null \
            || written "the namespace list"
        unsafe=0
        while IFS= read -r ns <&3; do
            case "$ns" in
                ''|[.-]*|*[!A-Za-z0-9._-]*) unsafe=$((unsafe + 1)); continue ;;
            esac
            [ -e "/run/netns/$ns" ] || [ -e "/var/run/netns/$ns" ] || { unsafe=$((unsafe + 1)); continue; }
            printf '%s\n' "$ns" >> "$NETNS" 2>/dev/null || { written "the namespace list"; break; }
            reading 1 "$ns" "$B/netns/$ns"
            sysctls "$ns" "$B/netns/$ns" @NETNS_SYSCTL_PATHS@
            sockets "$ns" "$B/netns/$ns"
        done 3< "$WORK/netns.all"
        if [ "$unsafe" -gt 0 ]; then
            note "$unsafe namespace names skipped: not plain names (letters, digits, . _ - only)"
        fi
    else
        note "--all-netns needs root and ip: other namespaces not gathered"
    fi
fi
LEFT=$(( (FIRST + INTERVAL * 100 + 1 - $(uptime_cs) + 99) / 100 ))  # + 1 cs: never just short
if [ "$LEFT" -gt 0 ] && [ -z "$FULL" ]; then sleep "$LEFT"; fi
reading 2 "" "$B"
while IFS= read -r ns <&3; do reading 2 "$ns" "$B/netns/$ns"; done 3< "$NETNS"

(cd "$WORK" && tar -czf "$OUT/.$NAME.tar.gz.part" "$NAME") || {
    echo "collect: could not write the bundle in $OUT" >&2; exit 1; }
mv -f "$OUT/.$NAME.tar.gz.part" "$OUT/$NAME.tar.gz" || exit 1
if [ -n "$FULL" ]; then
    echo "collect: wrote an INCOMPLETE bundle $OUT/$NAME.tar.gz (its notes say what is missing); free space in $TMP or set TMPDIR, then run again" >&2
    echo "$OUT/$NAME.tar.gz"
    exit 1
fi
echo "collect: wrote $OUT/$NAME.tar.gz ($(wc -c < "$OUT/$NAME.tar.gz") bytes); analyze it with: tcpdoctor analyze $NAME.tar.gz" >&2
echo "$OUT/$NAME.tar.gz"
