"""Running per-clip jobs in worker processes with a progress bar (preprocess.py, kpmaker.py)."""
import multiprocessing
import sys


def run_in_workers(jobs, work, initializer, initargs, workers, desc):
    """Yield ``work(job)`` for every job, in completion order, with a tqdm bar on stderr.

    ``workers`` > 1 runs them in that many processes, each set up once by ``initializer(*initargs)``
    (e.g. loading dlib's models, which cannot be pickled). ``work`` and ``initializer`` must be
    module-level functions.
    """
    from tqdm import tqdm

    if not jobs:
        return
    bar = tqdm(total=len(jobs), desc=desc, unit="clip", file=sys.stderr, disable=None)
    pool = None
    # Set up here first even with workers: a model that fails to load in a pool initializer makes the
    # pool respawn workers forever instead of reporting the error.
    initializer(*initargs)
    try:
        if workers <= 1:
            results = map(work, jobs)
        else:
            # spawn, not fork: forking a process that already runs torch threads can deadlock.
            pool = multiprocessing.get_context("spawn").Pool(workers, initializer, initargs)
            results = pool.imap_unordered(work, jobs)
        for result in results:
            bar.update()
            yield result
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
