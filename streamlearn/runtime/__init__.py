"""The process model: a supervisor, one learner process, ``serve.workers`` serving processes.

What crosses between them is data only: snapshots as weights-only files in shared memory
(:mod:`.snapshots`), JSON frames over a Unix socket for requests to the learner (:mod:`.ipc`),
a JSON status file the learner rewrites, and prometheus-client's multiprocess files.
"""
