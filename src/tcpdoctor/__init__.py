"""tcpdoctor: find out why a Linux server's TCP connections are exploding."""

__version__ = "0.1.0"
