#!/usr/bin/env python3
"""HTTP load for scripts/server-chaos.sh and `SERVER=1 scripts/soak.sh`: workers invoke the `ledger` plugin on one or more
`wasmtx serve` nodes, keyed and unkeyed, and log every request and its answer (one JSON
line each), so the chaos script can check the databases against what was answered.

  server_load.py run    --urls N1=U1,N2=U2 --token T --seconds S --workers N --prefix P --log F
  server_load.py repeat --urls N1=U1,N2=U2 --token T --log F --out F2
  server_load.py check  --log F --repeats F2 --ledger NAME=FILE ...

`run` stops when the time is up or when no node has answered for --give-up seconds (the
node was killed). A request without an answer is logged with status null. An unkeyed
request that got no answer moves to the next node for the next request (a client failing
over); a keyed one is not sent elsewhere: keys are per node (README, "Idempotency").

`repeat` sends every keyed request of a log again, to the node that took it (by name: its
URL may have changed with a restart), with the same key and body, and logs the answers: after the restarts each must answer the first
outcome.

`check` (`--no-kills` for a run nobody killed, a soak) reads the logs and each participant's ledger (one id per line, as many lines as
rows) and prints what it found; it exits 1 if an id is on some of its participants and not
the others, on one twice, missing where it was answered 200, or if a repeat's answer
contradicts what the databases hold — or if the run tested nothing (no request was in
flight at a kill, or none committed).

Only the standard library: it runs wherever python3 does.
"""

import argparse
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request


REFUSED = "connection refused"


def invoke(url, token, body, key, timeout):
    """POST one invoke; (status, answer), or (None, error text) when nothing answered —
    `REFUSED` when the request never reached a server (nothing listened)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url + "/v1/plugins/ledger/invoke", data=data, method="POST"
    )
    request.add_header("Authorization", "Bearer " + token)
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            return None, REFUSED
        return None, str(error)
    except (OSError, ValueError) as error:
        return None, str(error)


def run_all(target, arguments):
    """Runs `target` on a thread per tuple of `arguments` and waits for them all."""
    threads = [threading.Thread(target=target, args=a) for a in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def request_body(request_id, participants, timeout_ms):
    return {
        "input": {"id": request_id},
        "participants": participants,
        "timeout_ms": timeout_ms,
    }


def gid_of(answer):
    if isinstance(answer, dict):
        return answer.get("gid") or (answer.get("transaction") or {}).get("gid")
    return None


def nodes_of(text):
    """`name=url,…` as a list of (name, url)."""
    return [tuple(pair.split("=", 1)) for pair in text.split(",") if pair]


def run(args):
    nodes = nodes_of(args.urls)
    variants = {"two": [["a", "b"]], "three": [["a", "b", "c"]]}
    choices = variants.get(args.variant, variants["two"] + variants["three"])
    lock = threading.Lock()
    log = open(args.log, "a", encoding="utf-8")
    deadline = time.monotonic() + args.seconds
    last_answer = [time.monotonic()]

    def write(entry):
        with lock:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    def worker(number):
        node = number % len(nodes)
        sent = 0
        rng = random.Random(f"{args.prefix}-{number}")
        while time.monotonic() < deadline:
            if time.monotonic() - last_answer[0] > args.give_up:
                return
            sent += 1
            request_id = f"{args.prefix}-w{number}-{sent}"
            keyed = rng.random() < args.keyed
            participants = rng.choice(choices)
            body = request_body(request_id, participants, args.timeout_ms)
            status, answer = invoke(
                nodes[node][1], args.token, body, request_id if keyed else None, args.request_timeout
            )
            if status is not None:
                last_answer[0] = time.monotonic()
            write(
                {
                    "id": request_id,
                    "keyed": keyed,
                    "node": nodes[node][0],
                    "participants": participants,
                    "body": body,
                    "status": status,
                    "gid": gid_of(answer),
                    "error": answer if status is None else None,
                }
            )
            if status is None:
                if not keyed:
                    node = (node + 1) % len(nodes)
                time.sleep(0.05)

    run_all(worker, [(n,) for n in range(args.workers)])
    log.close()


def repeat(args):
    urls = dict(nodes_of(args.urls))
    entries = [json.loads(line) for line in open(args.log, encoding="utf-8")]
    keyed = [e for e in entries if e["keyed"]]
    lock = threading.Lock()
    out = open(args.out, "w", encoding="utf-8")

    def one(entry):
        for _ in range(args.attempts):
            status, answer = invoke(
                urls[entry["node"]], args.token, entry["body"], entry["id"], args.request_timeout
            )
            # 503 (not ready yet) and 429 (busy) are not answers: try again.
            if status not in (None, 429, 503):
                break
            time.sleep(1)
        replayed = None
        if isinstance(answer, dict) and "transaction" in answer:
            replayed = (answer.get("transaction") or {}).get("outcome")
        elif isinstance(answer, dict):
            replayed = answer.get("status")
        line = {
            "id": entry["id"],
            "first_status": entry["status"],
            "status": status,
            "outcome": replayed,
            "answer": answer if status != 200 else None,
        }
        with lock:
            out.write(json.dumps(line) + "\n")

    def worker(share):
        for entry in share:
            one(entry)

    run_all(worker, [(keyed[n :: args.workers],) for n in range(args.workers)])
    out.close()


def check(args):
    entries = [json.loads(line) for line in open(args.log, encoding="utf-8")]
    repeats = {}
    if args.repeats:
        for line in open(args.repeats, encoding="utf-8"):
            r = json.loads(line)
            repeats[r["id"]] = r
    ledgers = {}
    for spec in args.ledger:
        name, path = spec.split("=", 1)
        counts = {}
        for line in open(path, encoding="utf-8"):
            line = line.strip()
            if line:
                counts[line] = counts.get(line, 0) + 1
        ledgers[name] = counts
    known = {e["id"] for e in entries}
    problems = []
    committed = answered_committed = unanswered = unanswered_committed = refused = 0
    for e in entries:
        present = {p: ledgers.get(p, {}).get(e["id"], 0) for p in e["participants"]}
        twice = [p for p, n in present.items() if n > 1]
        if twice:
            problems.append(f"{e['id']} ran more than once on {twice}")
        on = [p for p, n in present.items() if n > 0]
        if on and len(on) != len(present):
            problems.append(f"{e['id']} is partial: on {on} of {e['participants']}")
        is_committed = len(on) == len(present)
        committed += is_committed
        if e["status"] == 200:
            answered_committed += 1
            if not is_committed:
                problems.append(f"{e['id']} was answered 200 but is not on {e['participants']}")
        elif e["error"] == REFUSED:
            refused += 1
            # A keyed one ran when it was repeated (checked below); an unkeyed one never ran.
            if is_committed and not e["keyed"]:
                problems.append(f"{e['id']} never reached a server, yet it committed")
        elif e["status"] is None:
            unanswered += 1
            unanswered_committed += is_committed
        elif (400 <= e["status"] < 500 or e["status"] in (502, 503, 504)) and is_committed:
            # Each of these says the transaction did not commit (or never ran).
            problems.append(f"{e['id']} was answered {e['status']} but committed")
        r = repeats.get(e["id"])
        if r is not None:
            says_committed = r["status"] == 200 or r["outcome"] == "committed"
            says_final_abort = r["outcome"] == "aborted" or r["status"] in (409, 422)
            if says_committed and not is_committed:
                problems.append(f"{e['id']}: its repeat answered committed, but it is not in the databases")
            if says_final_abort and is_committed:
                problems.append(f"{e['id']}: its repeat answered {r['status']} {r['outcome']}, but it committed")
            if r["status"] is None:
                problems.append(f"{e['id']}: its repeat got no answer")
            if e["status"] == 200 and r["status"] != 200:
                problems.append(f"{e['id']}: answered 200 first, {r['status']} on its repeat")
    for name, counts in ledgers.items():
        strays = [i for i in counts if i not in known]
        if strays:
            problems.append(f"{len(strays)} ids on {name} that no request sent, e.g. {strays[0]}")
    print(f"requests                       {len(entries)} ({sum(e['keyed'] for e in entries)} keyed)")
    print(f"committed (in the databases)   {committed}")
    print(f"answered 200                   {answered_committed}")
    print(f"in flight at a kill            {unanswered} ({unanswered_committed} of them committed)")
    print(f"refused (nothing listening)    {refused}")
    print(f"keyed requests repeated        {len(repeats)}")
    print(f"problems                       {len(problems)}")
    if committed == 0:
        problems.append("nothing committed: the load did no work")
    if unanswered == 0 and not args.no_kills:
        problems.append("no request was in flight when the server was killed: the kills tested nothing")
    for problem in problems[:50]:
        print("  " + problem)
    sys.exit(1 if problems else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["run", "repeat", "check"])
    parser.add_argument("--urls", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--repeats")
    parser.add_argument("--ledger", action="append", default=[], help="NAME=FILE")
    parser.add_argument("--log", required=True)
    parser.add_argument("--out")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--prefix", default="r")
    parser.add_argument("--keyed", type=float, default=0.5, help="share of keyed requests")
    parser.add_argument("--variant", default="mixed", choices=["two", "three", "mixed"])
    parser.add_argument("--timeout-ms", type=int, default=1000)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--give-up", type=float, default=2.0)
    parser.add_argument("--attempts", type=int, default=60)
    parser.add_argument(
        "--no-kills", action="store_true", help="check: a run without kills (a soak)"
    )
    args = parser.parse_args()
    if args.mode == "run":
        run(args)
    elif args.mode == "check":
        check(args)
    else:
        if not args.out:
            sys.exit("repeat needs --out")
        repeat(args)


if __name__ == "__main__":
    main()
