"""Production jobs: the sync pipeline run by Celery workers, triggered by beat, one sync per
connector at a time under a Redis lease.

app.py        the Celery app of one deployment (broker, queue, acks, visibility timeout)
tasks.py      full_sync, incremental_sync, permission_sync, group_sync, prune
lock.py       the per-connector Redis lease (the SyncLock with a broker) and merged triggers
runner.py     one sync under its SyncLock, then the triggers merged into it
schedules.py  beat entries from each connector's schedules; next run times for `status`
records.py    skipped and merged trigger records in the state store (no Celery import)
testing.py    a throwaway redis-server and worker processes, for tests and benchmarks
"""
