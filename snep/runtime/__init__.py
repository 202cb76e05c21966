"""The asyncio runtime: real sockets, netlink, timers and signals around the sans-I/O node."""
