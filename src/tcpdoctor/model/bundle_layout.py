"""The collect bundle's layout, as data: what `tcpdoctor collect`'s script gathers and where
it puts it, and what `analyze BUNDLE` reads back. One table for both sides, built from the
tables the live readers use (sysctls, slab caches), so the two cannot drift apart.

Inside `tcpdoctor-HOST-TIME.tar.gz`, one directory `tcpdoctor-HOST-TIME/` holds:

    FORMAT                 "tcpdoctor-bundle 1"
    meta.txt               key=value lines: host, kernel, started, interval, uid, page_size,
                           sockets (ss|proc), script (the tcpdoctor version that wrote it)
    notes.txt              what could not be gathered, and why (one line each)
    proc/1/, proc/2/       two readings, INTERVAL seconds apart, laid out like /proc
                           (net/sockstat, net/netstat, ..., stat, softirqs, uptime); the
                           first also holds sys/... (sysctls), slabinfo and meminfo
    sockets/ss.txt         `ss -tanpoiem` (when ss exists)
    sockets/tcp, tcp6      /proc/net/tcp and tcp6 (always: the fallback)
    sockets/owners.txt     "PID INODE" for every socket file descriptor (from /proc/PID/fd)
    sockets/conntrack.txt  `conntrack -L` (else /proc/net/nf_conntrack), only where the table
                           could be read (empty: an empty table); with addresses.txt (`ip -o
                           addr`), nft.json and iptables-nat.txt (the NAT rules' ranges)
    processes.txt          "PID FDS NOFILE COMM" for every process that holds a socket
    files/ETC/...          the sysctl configuration files, at their own paths
    netns/NAME/            (--all-netns) proc/1, proc/2 and sockets/ of a named namespace
"""

from __future__ import annotations

from tcpdoctor.model.kernel_state import GLOBAL_SYSCTLS, SLAB_CACHES, SYSCTLS

FORMAT_NAME = "tcpdoctor-bundle"
VERSION = 1
# Files read at each of the two readings (rates come from their difference).
READING_FILES = ("net/sockstat", "net/sockstat6", "net/netstat", "net/snmp", "net/snmp6",
                 "net/stat/nf_conntrack", "stat", "softirqs", "uptime")
# Read once, at the first reading, under proc/1/.
ONCE_FILES = ("meminfo", "sys/fs/file-nr")
# Sysctls as /proc paths (net.ipv4.tcp_mem -> sys/net/ipv4/tcp_mem).
SYSCTL_PATHS = tuple("sys/" + key.replace(".", "/") for key in SYSCTLS)
# Per-namespace keys only: a namespace's own copy of what differs between namespaces.
NETNS_SYSCTL_PATHS = tuple("sys/" + key.replace(".", "/") for key in SYSCTLS
                           if key not in GLOBAL_SYSCTLS)
SLAB = SLAB_CACHES
SOCKET_FILES = ("tcp", "tcp6")
DEFAULT_INTERVAL = 5
MAX_SOCKET_BYTES = 256 << 20  # each socket listing is cut there (and the cut is noted)
MAX_SECONDS = 120  # the process scan stops there (and says so)
