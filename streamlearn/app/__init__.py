"""The commands a user runs: ``streamlearn run``, ``demo``, ``produce``, the embedded broker.

The top of the import graph: it wires the daemon, the processes and serving together, and
nothing below imports from here.
"""
