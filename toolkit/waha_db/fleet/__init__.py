"""The WAHA fleet: the servers of each user, the sessions' capacity counters, health probing and the monitor."""
