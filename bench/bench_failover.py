"""Leader failover between replicas: kill the leader, time until the next one runs its
loop (README "Run several replicas"; target: under 10 s).

Two processes on one fresh PostgreSQL database each run ``app.store.coord.Leadership``
(the advisory lock on a dedicated connection) and an elected loop (``every``, as the
sweep and the EC2 launcher run) that writes a line each pass. The bench SIGKILLs the
leader and measures, in wall time, from the kill to the other process's first pass;
then restarts the killed one as a follower, and again, ``--rounds`` times.

    PLOYD_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python bench/bench_failover.py --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's app, run as a script


async def member(url: str, retry_s: float, period_s: float) -> None:
    """One replica's part: lead when it can; each elected pass prints its time."""
    from app.store.coord import Leadership, every
    from app.store.db import Database

    db = Database.connect(url)
    leadership = Leadership(db, "bench", retry_s=retry_s)
    leadership.start()

    async def run() -> None:
        print(f"pass {os.getpid()} {time.time():.6f}", flush=True)

    await every(leadership, period_s, "bench pass", run)


def start(url: str, retry_s: float, period_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--member", url, str(retry_s), str(period_s)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def first_pass(proc: subprocess.Popen[str], timeout_s: float = 60) -> float:
    """The time of ``proc``'s next pass line (blocking; the bench's own clock)."""
    assert proc.stdout is not None
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"member {proc.pid} ended")
        if line.startswith("pass "):
            return float(line.split()[2])
    raise SystemExit(f"member {proc.pid}: no pass within {timeout_s}s")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--retry", type=float, default=1.0, help="Leadership.retry_s (default 1)")
    p.add_argument("--member", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.member:
        url, retry_s, period_s = args.member
        asyncio.run(member(url, float(retry_s), float(period_s)))
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = os.environ.get("PLOYD_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("set PLOYD_TEST_POSTGRES_URL (a PostgreSQL server to make a database in)")
    name = "ployd_failover_" + uuid.uuid4().hex[:8]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    period = 0.2  # the elected loop's own period (the sweep's is 5 s)
    procs = [start(url, args.retry, period)]
    times: list[float] = []
    try:
        first_pass(procs[0])  # it leads
        procs.append(start(url, args.retry, period))
        time.sleep(2 * args.retry + 1)  # the follower is up and trying (a bench: timed)
        for _ in range(args.rounds):
            leader, follower = procs
            killed = time.time()
            leader.send_signal(signal.SIGKILL)
            leader.wait()
            took = first_pass(follower) - killed
            times.append(took)
            print(f"failover: {took:.2f} s")
            procs = [follower, start(url, args.retry, period)]
            time.sleep(2 * args.retry + 1)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
    median, worst = statistics.median(times), max(times)
    print(
        f"leader failover over {len(times)} kills: median {median:.2f} s, worst {worst:.2f} s "
        f"(target < 10 s: {'met' if worst < 10 else 'MISSED'}); retry interval "
        f"{args.retry:.1f} s, median / retry = {median / args.retry:.2f}x"
    )


if __name__ == "__main__":
    main()
