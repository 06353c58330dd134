"""Python requests (one Session) for `make bench-wan`: the workloads of
bench/wan_sdk.lua, timed the same way. Prints "wall_s <seconds>".
    python3 wan_requests.py WORKLOAD URL CA_FILE [RUN_ID]
The agency workload shares one Session (pool of 8) between 50 tenants, each
sending its own key, on 8 threads: what a Python agency would write."""
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import requests
from requests.adapters import HTTPAdapter

workload, url, ca = sys.argv[1], sys.argv[2], sys.argv[3]
run_id = sys.argv[4] if len(sys.argv) > 4 else str(int(time.time()))
KEY = "mf_AcmeAllu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOO"
HEADERS = {"Accept": "application/json", "X-API-Key": KEY}

session = requests.Session()
# per request: REQUESTS_CA_BUNDLE in the environment overrides session.verify
session.request = partial(session.request, verify=ca)
session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=16))


def ok(r):
    if r.status_code >= 300:
        raise SystemExit("requests: HTTP %d %s" % (r.status_code, r.text[:200]))
    return r.json()


def session_run():
    for i in range(1, 11):
        ok(session.get(url + "/usage/current", headers=HEADERS))
        ok(session.post(url + "/api-keys", headers=HEADERS,
                        json={"name": "wan-%s-py-%d" % (run_id, i), "scopes": ["usage:read"]}))
        ok(session.patch(url + "/tenant/settings", headers=HEADERS, json={"require_approval": i % 2 == 0}))


def agency_run():
    tenant_headers = [dict(HEADERS) for _ in range(50)]  # one key per tenant client
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(2):
            results = list(pool.map(lambda h: ok(session.get(url + "/usage/current", headers=h)),
                                    tenant_headers))
            assert len(results) == 50


def batch_run():
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: ok(session.get(url + "/usage/current", headers=HEADERS)),
                                range(32)))
        assert len(results) == 32


run = {"session": session_run, "agency": agency_run, "batch": batch_run}[workload]
t0 = time.monotonic()
run()
print("wall_s %.4f" % (time.monotonic() - t0))
