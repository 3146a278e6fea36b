"""The proxy (``ttscale serve``) under load, and its latency overhead over direct calls.

Starts a policy server (``ttscale serve-policy``, EOS ignored so every completion has exactly
``--max-tokens`` tokens) and the proxy in front of it (``ttscale serve --upstream ...``), both as
processes on loopback, then with the official ``openai`` client:

1. **overhead**: alternately, one direct ``/v1/completions`` call to the policy server (n=1) and
   one proxied ``/v1/chat/completions`` call with strategy ``majority`` at budget 1 (which makes
   exactly that one upstream call): median latencies side by side and their difference;
2. **sustained load**: ``--clients`` threads (= the proxy's ``--max-concurrent``) send proxied
   requests (``--strategy``, ``--budget``) for ``--seconds`` seconds: requests, errors (must be
   0), requests/s, p50/p95 latency;
3. **burst**: ``--burst-factor`` x capacity (slots + ``--max-queue``) requests at once: how many
   were answered 200 and how many 429 (with ``Retry-After``), the proxy's largest queue (must
   stay <= ``--max-queue``), and the burst's p95 for the admitted ones;
4. **cancellation**: ``--cancel`` clients each send one long request (``beam:16``, one engine
   and one PRM call per round) and hang up after ``--cancel-after`` s; then, after a quiet
   period, the engine calls the proxy made for them after they left (its
   ``engine_calls_after_cancel``) and the upstream's requests counted during the quiet period.

Run::

    python bench/bench_proxy.py [--seconds 20] [--clients 8] [--strategy majority --budget 4]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time

import httpx
import openai
from serve_procs import policy_dir, policy_servers, process

from ttscale.serve.common import free_port

KEY = "bench-key"


def overhead(direct: openai.OpenAI, proxy: openai.OpenAI, model: str, rounds: int,
             max_tokens: int) -> tuple[list[float], list[float]]:
    d, p = [], []
    for i in range(rounds):
        q = f"Q:{10 + i % 80}a+{i % 9 + 1}"
        t0 = time.perf_counter()
        direct.completions.create(model=model, prompt=q + "\n", max_tokens=max_tokens, seed=i,
                                  temperature=1.0)
        t1 = time.perf_counter()
        r = proxy.chat.completions.create(model="ttscale@majority:1", max_tokens=max_tokens,
                                          messages=[{"role": "user", "content": q}], seed=i)
        t2 = time.perf_counter()
        if r.usage.completion_tokens != max_tokens:  # equal work on both paths, or no comparison
            raise RuntimeError(f"proxied call generated {r.usage.completion_tokens} tokens")
        if i:  # the first round warms up connections
            d.append(t1 - t0)
            p.append(t2 - t1)
    return d, p


def load(proxy_url: str, clients: int, seconds: float, model: str,
         max_tokens: int) -> tuple[list[float], list[str]]:
    lat: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def worker(k: int) -> None:
        c = openai.OpenAI(base_url=proxy_url, api_key=KEY, max_retries=0, timeout=120)
        i = 0
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                c.chat.completions.create(
                    model=model, max_tokens=max_tokens, seed=k * 100000 + i,
                    messages=[{"role": "user", "content": f"Q:{10 + i % 80}a*{k % 8 + 2}"}])
                with lock:
                    lat.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
            i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors


def burst(proxy_url: str, n: int, model: str, max_tokens: int
          ) -> tuple[list[float], list[int], list[str]]:
    """``n`` requests released at once: latencies of the 200s, all status codes, Retry-Afters."""
    lat: list[float] = []
    codes: list[int] = []
    retry: list[str] = []
    lock = threading.Lock()
    go = threading.Event()

    def one(i: int) -> None:
        body = {"model": model, "max_tokens": max_tokens, "seed": i,
                "messages": [{"role": "user", "content": f"Q:{10 + i % 80}a+{i % 9 + 1}"}]}
        go.wait()
        t0 = time.perf_counter()
        r = httpx.post(proxy_url + "/chat/completions", json=body, timeout=300,
                       headers={"Authorization": f"Bearer {KEY}"})
        with lock:
            codes.append(r.status_code)
            if r.status_code == 200:
                lat.append(time.perf_counter() - t0)
            elif r.status_code == 429:
                retry.append(r.headers.get("Retry-After", ""))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join()
    return lat, codes, retry


def cancel(proxy_url: str, upstream: str, n: int, after_s: float, model: str,
           max_tokens: int, quiet_s: float) -> tuple[int, int, dict]:
    """``n`` clients hang up after ``after_s``; (upstream requests in the quiet period after,
    upstream requests during, the proxy's stats)."""
    root = upstream.removesuffix("/v1")
    base = httpx.get(root + "/health").json()["requests"]

    def one(i: int) -> None:
        body = {"model": model, "max_tokens": max_tokens, "seed": i,
                "messages": [{"role": "user", "content": f"Q:{20 + i}a*3b+4c-5d*6"}]}
        with contextlib.suppress(httpx.TimeoutException):
            httpx.post(proxy_url + "/chat/completions", json=body, timeout=after_s,
                       headers={"Authorization": f"Bearer {KEY}"})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.0)  # the one call each search had in flight may still finish upstream
    left = httpx.get(root + "/health").json()["requests"]
    time.sleep(quiet_s)
    end = httpx.get(root + "/health").json()["requests"]
    stats = httpx.get(proxy_url.removesuffix("/v1") + "/health").json()
    return end - left, left - base, stats


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="policy folder (default: testbed policy-small)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--strategy", default="majority")
    ap.add_argument("--budget", type=int, default=4)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--burst-factor", type=int, default=10)
    ap.add_argument("--cancel", type=int, default=4)
    # short enough that a beam:16 search on an idle machine is still running when the client goes
    ap.add_argument("--cancel-after", type=float, default=0.3)
    ap.add_argument("--quiet", type=float, default=5.0)
    args = ap.parse_args()
    model = policy_dir(args.model)
    port = free_port()
    proxy_url = f"http://127.0.0.1:{port}/v1"
    with policy_servers(model, 1) as (upstream,), process(
            ["serve", "--upstream", upstream, "--strategy", "majority", "--option",
             "beam_width=4",
             "--budget", "1", "--api-key", KEY, "--port", str(port), "--max-budget", "64",
             "--max-concurrent", str(args.clients), "--max-queue", str(args.max_queue)],
            f"http://127.0.0.1:{port}/health"):
        direct = openai.OpenAI(base_url=upstream, api_key="none", max_retries=0)
        proxy = openai.OpenAI(base_url=proxy_url, api_key=KEY, max_retries=0)
        d, p = overhead(direct, proxy, "ttscale-policy", args.rounds, args.max_tokens)
        md, mp = statistics.median(d), statistics.median(p)
        diff = statistics.median(b - a for a, b in zip(d, p, strict=True))
        print(f"overhead ({len(d)} sequential pairs, {args.max_tokens} tokens each): direct "
              f"median {md * 1000:.1f} ms, via proxy {mp * 1000:.1f} ms; median paired "
              f"difference {diff * 1000:.1f} ms ({diff / md * 100:.0f}% of a direct call)")
        name = f"ttscale@{args.strategy}:{args.budget}"
        lat, errors = load(proxy_url, args.clients, args.seconds, name, args.max_tokens)
        n = len(lat) + len(errors)
        print(f"load: {args.clients} clients x {args.seconds:.0f} s of {name}: {n} requests, "
              f"{len(errors)} errors, {len(lat) / args.seconds:.1f} req/s, "
              f"p50 {pct(lat, 0.5) * 1000:.0f} ms, p95 {pct(lat, 0.95) * 1000:.0f} ms")
        for e in errors[:5]:
            print("  error:", e)
        capacity = args.clients + args.max_queue
        blat, codes, retry = burst(proxy_url, args.burst_factor * capacity, name,
                                   args.max_tokens)
        stats = httpx.get(f"http://127.0.0.1:{port}/health").json()
        other = len(codes) - codes.count(200) - codes.count(429)
        print(f"burst: {len(codes)} requests at once ({args.burst_factor}x capacity "
              f"{args.clients} slots + {args.max_queue} queue): {codes.count(200)} x 200, "
              f"{codes.count(429)} x 429 (Retry-After {sorted(set(retry))}), {other} other; "
              f"largest queue {stats['max_waiting']} (cap {args.max_queue}); admitted p50 "
              f"{pct(blat, 0.5) * 1000:.0f} ms, p95 {pct(blat, 0.95) * 1000:.0f} ms")
        quiet, during, stats = cancel(proxy_url, upstream, args.cancel, args.cancel_after,
                                      "ttscale@beam:16", 256, args.quiet)
        print(f"cancellation: {args.cancel} clients hung up after {args.cancel_after:g} s; "
              f"proxy cancelled {stats['cancelled']}, engine calls after the hang-up "
              f"{stats['engine_calls_after_cancel']}; upstream requests while they waited "
              f"{during}, in the {args.quiet:g} s after {quiet}")


if __name__ == "__main__":
    main()
