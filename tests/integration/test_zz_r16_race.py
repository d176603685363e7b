import threading, time
from harness import drizzle_gen
from harness.ansible import run_module

def test_race_diag(fresh_db, tmp_path):
    root = tmp_path / 'race'
    tags = drizzle_gen.generate(str(root / 'migrations'), 4)
    path = root / 'migrations' / (tags[1] + '.sql')
    path.write_text(path.read_text() + drizzle_gen.BP + '\nSELECT pg_sleep(5);')
    svc = dict(name='race', tool='drizzle', path=str(root), database_url=fresh_db.password_url)
    results = [None, None]
    times = {}
    def go(i, lock_wait):
        times['start%d' % i] = time.time()
        results[i] = run_module('homelab_migration_apply', dict(service=svc, lock_wait=lock_wait))[0]
        times['end%d' % i] = time.time()
    threads = [threading.Thread(target=go, args=(0, 60)), threading.Thread(target=go, args=(1, 1))]
    threads[0].start()
    seen = []
    deadline = time.time() + 60
    while time.time() < deadline:
        rows = fresh_db.query("SELECT pid, objid, granted FROM pg_locks WHERE locktype = 'advisory' AND granted")
        if rows:
            seen.append((time.time(), rows))
            break
        time.sleep(0.05)
    threads[1].start()
    samples = []
    while threads[0].is_alive():
        samples.append((round(time.time() - times['start0'], 2), len(fresh_db.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted")), fresh_db.query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5)%' AND state='active' AND pid <> pg_backend_pid()")[0][0]))
        time.sleep(0.25)
    for t in threads:
        t.join(300)
    t0 = times['start0']
    print('seen', round(seen[0][0] - t0, 2) if seen else None, seen)
    print({k: round(v - t0, 2) for k, v in times.items()})
    print('samples', samples)
    print('r1', {k: results[1].get(k) for k in ('failed', 'msg', 'applied', 'lock_wait_seconds')})
    print('r0', {k: results[0].get(k) for k in ('failed', 'applied', 'lock_wait_seconds')})
