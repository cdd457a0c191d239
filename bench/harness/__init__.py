"""Shared pieces of the comparison scripts in `bench/`: processes, peers, clients, tables."""
