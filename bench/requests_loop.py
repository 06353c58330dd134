"""Python requests with one Session (kept-alive connection): N sequential GETs
of the subscription, decoded with .json().
    python3 requests_loop.py URL N  ->  "rps <requests per second>" """
import sys
import time

import requests

url, n = sys.argv[1], int(sys.argv[2])
session = requests.Session()
headers = {"Accept": "application/json", "X-API-Key": "mf_AcmeAllu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOO"}


def get():
    r = session.get(url, headers=headers)
    if r.status_code != 200 or r.json()["plan_id"] != "pro":
        raise SystemExit("requests: HTTP %d" % r.status_code)


get()
t0, cpu0 = time.monotonic(), time.process_time()
for _ in range(n):
    get()
print("rps %.1f" % (n / (time.monotonic() - t0)))
print("cpu_us %.2f" % ((time.process_time() - cpu0) / n * 1e6))
