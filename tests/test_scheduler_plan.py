"""The scheduling decision alone: priorities, fair share, FIFO, preemption, time slices, rejection."""

from xsharp.cluster.capacity import Resources
from xsharp.cluster.queue_plan import Running, Waiting, plan

TOTAL = Resources(4, 0)


def w(id, user="a", priority=0, cpus=1, t=None):
    return Waiting(id, user, priority, Resources(cpus, 0), t if t is not None else float(id))


def r(id, user="a", priority=0, cpus=1, started=0.0, stopping=False):
    return Running(id, user, priority, Resources(cpus, 0), started, stopping)


def test_higher_priority_first_then_fifo():
    p = plan([w(1), w(2, priority=5), w(3), w(4, priority=5)], [], Resources(2, 0), TOTAL, 10, 600)
    assert p.start == [2, 4] and p.blocked == 1


def test_fair_share_puts_the_user_with_less_running_first():
    # alice already runs 2 CPUs; bob's job, though queued later, goes first
    p = plan([w(1, "alice", t=1), w(2, "bob", t=2)], [r(9, "alice", cpus=2)], Resources(1, 0), TOTAL, 10, 600)
    assert p.start == [2] and p.blocked == 1


def test_fair_share_alternates_users_within_one_plan():
    jobs = [w(1, "alice"), w(2, "alice"), w(3, "alice"), w(4, "bob"), w(5, "bob")]
    p = plan(jobs, [], Resources(4, 0), TOTAL, 10, 600)
    assert p.start == [1, 4, 2, 5]


def test_recent_usage_orders_users_before_what_runs_now():
    # alice used the cluster recently, bob did not: bob's later job goes first, though nothing of alice's runs
    p = plan([w(1, "alice", t=1), w(2, "bob", t=2)], [], Resources(1, 0), TOTAL, 10, 600, usage={"alice": 300.0})
    assert p.start == [2] and p.blocked == 1
    # equal usage: the running share decides, then the queue order
    p = plan([w(1, "alice", t=1), w(2, "bob", t=2)], [r(9, "alice")], Resources(1, 0), TOTAL, 10, 600, usage={"alice": 5.0, "bob": 5.0})
    assert p.start == [2]
    assert plan([w(1, "alice", t=1), w(2, "bob", t=2)], [], Resources(1, 0), TOTAL, 10, 600, usage={}).start == [1]
    # priority still comes first
    p = plan([w(1, "alice", priority=5), w(2, "bob")], [], Resources(1, 0), TOTAL, 10, 600, usage={"alice": 1e9})
    assert p.start == [1]


def test_usage_decays_with_its_half_life_and_a_hold_is_its_exact_integral():
    import math

    from xsharp.cluster.usage import Usage, held

    h = 3600.0
    u = Usage().plus_hold(2, 1, start=0.0, end=600.0, half_life=h)
    exact = h / math.log(2) * (1 - 2 ** (-600 / h))  # integral of 2^(-(600 - t)/h) over [0, 600]
    assert u.as_of == 600.0 and math.isclose(u.cpu_seconds, 2 * exact) and math.isclose(u.gpu_seconds, exact)
    assert 560 < exact < 570  # ten minutes of a one-hour half-life: each second counts 2^(-age/h), 0.94 on average
    later = u.at(600.0 + h, h)
    assert math.isclose(later.cpu_seconds, u.cpu_seconds / 2) and math.isclose(later.gpu_seconds, u.gpu_seconds / 2)
    assert math.isclose(held(1e-3, h), 1e-3, rel_tol=1e-9)  # a short hold: its length
    two = Usage().plus_hold(1, 0, 0, 100, h).plus_hold(1, 0, 100, 200, h)
    assert math.isclose(two.cpu_seconds, Usage().plus_hold(1, 0, 0, 200, h).cpu_seconds)  # a hold split in two adds up the same
    assert later.share(4, 2) == max(later.cpu_seconds / 4, later.gpu_seconds / 2)


def test_plan_with_ten_thousand_queued_jobs_and_usage_stays_cheap():
    import time

    jobs = [w(i, user=f"u{i % 50}", priority=i % 3) for i in range(10_000)]
    usage = {f"u{u}": float(u) for u in range(50)}
    t = time.perf_counter()
    p = plan(jobs, [], Resources(64, 0), Resources(64, 0), 0, 600, usage)
    seconds = time.perf_counter() - t
    assert len(p.start) == 64 and p.start[0] == 50  # u0, the least used, first: job 50 is its first of priority 2
    print(f"plan: 10,000 queued jobs of 50 users: {1000 * seconds:.1f} ms")


def test_a_job_that_can_never_fit_is_rejected_with_the_reason():
    p = plan([w(1, cpus=8), w(2)], [], Resources(4, 0), TOTAL, 10, 600)
    assert p.reject == [(1, "needs 8 CPU; the cluster has 4 CPU in all")] and p.start == [2]


def test_higher_priority_preempts_the_lowest_and_newest_first():
    running = [r(1, priority=0, cpus=2, started=1), r(2, priority=0, cpus=2, started=5)]
    p = plan([w(3, priority=9, cpus=2)], running, Resources(0, 0), TOTAL, 10, 600)
    assert p.preempt == [2] and p.start == [] and p.blocked == 3


def test_equal_priority_never_preempts_before_its_slice():
    running = [r(1, cpus=4, started=0)]
    assert plan([w(2, cpus=4)], running, Resources(0, 0), TOTAL, 100, 600).yield_ == []
    p = plan([w(2, cpus=4)], running, Resources(0, 0), TOTAL, 700, 600)
    assert p.yield_ == [1] and p.preempt == []


def test_nothing_more_is_asked_while_a_stop_is_under_way_and_nothing_backfills():
    running = [r(1, cpus=4, started=0, stopping=True)]
    p = plan([w(2, priority=9, cpus=4), w(3, cpus=1)], running, Resources(0, 0), TOTAL, 10_000, 600)
    assert (p.preempt, p.yield_, p.start, p.blocked) == ([], [], [], 2)


def test_ten_thousand_queued_jobs_start_the_top_priority_spread_over_users():
    jobs = [w(i, user=f"u{i % 50}", priority=i % 3) for i in range(10_000)]
    p = plan(jobs, [], Resources(64, 0), Resources(64, 0), 0, 600)
    assert len(p.start) == 64 and all(i % 3 == 2 for i in p.start)
    users = [i % 50 for i in p.start]
    assert len(set(users)) == 50 and max(users.count(u) for u in set(users)) == 2  # 64 slots over 50 users


def test_a_job_that_cannot_start_fails_and_the_queue_moves_on(tmp_path, ray_address):
    from tests.helpers import TINY
    from xsharp.cluster.scheduler import Scheduler
    from xsharp.cluster.store import Store

    store = Store(tmp_path)
    broken = store.submit("u", {"name": "broken", "model": "not a list"}, 0, 1, 0)  # as if the store held a bad spec
    good = store.submit("u", TINY, 0, 1, 0)
    s = Scheduler(store, tick=0.1)
    try:
        for _ in range(200):
            s.tick()
            if store.get(good.id).state == "SUCCEEDED":
                break
            __import__("time").sleep(0.1)
        assert store.get(broken.id).state == "FAILED" and "could not start" in store.events(broken.id)[-1]["message"]
        assert store.get(good.id).state == "SUCCEEDED"
    finally:
        s.close(timeout=5)
