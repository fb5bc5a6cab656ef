"""A Python script that misbehaves on request, for the sandbox tests: the input's `do`
names what it does."""

import sys

import wasmtx


def recurse(depth: int) -> int:
    return recurse(depth + 1) + 1


@wasmtx.run
def misbehave(request: dict) -> dict:
    action = request["do"]
    if action == "raise":
        raise ValueError("the ledger does not balance")
    if action == "loop":
        while True:
            pass
    if action == "memory":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if action == "output":
        return {"padding": "x" * (4 << 20)}
    if action == "print":
        for _ in range(20_000):
            print("chatter " * 8)
        return {"printed": True}
    if action == "stack":
        sys.setrecursionlimit(10_000_000)
        return {"depth": recurse(0)}
    if action == "ignore-failure":
        participant = wasmtx.participants()[0]
        participant.execute("INSERT INTO accounts (id, balance) VALUES ('carol', 5)")
        try:
            participant.execute("INSERT INTO no_such_table VALUES (1)")
        except wasmtx.DatabaseError as e:
            wasmtx.warn(f"ignoring: {e}")
        return {"ignored": True}
    raise wasmtx.Abort(f"unknown action {action!r}")
