"""The job store without worker processes: which finished jobs it keeps."""

import time

import pytest

pytest.importorskip("starlette")

from gaussmix.studio import jobs


def test_only_the_latest_finished_jobs_are_kept(monkeypatch):
    monkeypatch.setattr(jobs, "KEPT_JOBS", 3)
    store = jobs.JobStore()
    running = jobs.Job(id="running", settings=jobs.Settings(), state="fitting")
    store.jobs[running.id] = running
    for index in range(6):
        job = jobs.Job(id=f"j{index}", settings=jobs.Settings())
        store.jobs[job.id] = job
        with store.lock:
            store._finish(job, "done" if index % 2 else "failed")
        time.sleep(0.001)  # distinct finishing times
    with store.lock:
        store._forget_old()
    assert set(store.jobs) == {"running", "j3", "j4", "j5"}  # unfinished ones always stay
    failed = store.jobs["j4"]
    assert failed.painting is None and failed.renders == {} and failed.history[-1]["state"] == \
        "failed"
