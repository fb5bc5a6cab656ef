"""Drives `wasmtx serve` through the client openapi-python-client generated from its
document (package `wasmtx_client` on PYTHONPATH): publishes the transfer plugin, invokes a
commit and an abort, reads the status, the history and the in-doubt list, and checks each
answer's typed fields. Prints the gids as JSON; tests/contract.rs checks the databases.

Usage: client_check.py URL ADMIN_TOKEN TRANSFER_WASM
"""

import io
import json
import sys

from wasmtx_client import AuthenticatedClient
from wasmtx_client.api.plugins import publish, show_plugin
from wasmtx_client.api.recovery import in_doubt
from wasmtx_client.api.transactions import history, invoke, transaction_status
from wasmtx_client.models import InvokeRequest, InvokeResponse, Problem, TxState
from wasmtx_client.types import File


def transfer(amount):
    return {
        "from": {"participant": "a", "account": "alice"},
        "to": {"participant": "b", "account": "bob"},
        "amount": amount,
    }


def expect(condition, what):
    if not condition:
        sys.exit(f"client check failed: {what}")


def main():
    url, token, wasm = sys.argv[1:4]
    client = AuthenticatedClient(base_url=url, token=token, raise_on_unexpected_status=True)
    with open(wasm, "rb") as f:
        component = f.read()

    published = publish.sync_detailed(
        "transfer", "1.0.0", client=client,
        body=File(payload=io.BytesIO(component), mime_type="application/wasm"),
    )
    expect(published.status_code == 201, f"publish: {published.status_code} {published.content!r}")
    expect(published.parsed.digest.startswith("sha256:"), f"publish: {published.parsed}")
    plugin = show_plugin.sync("transfer", client=client)
    expect(plugin.name == "transfer", f"show: {plugin}")

    committed = invoke.sync_detailed(
        "transfer", client=client, body=InvokeRequest(input_=transfer(30)),
        idempotency_key="client-check-1",
    )
    expect(committed.status_code == 200, f"commit: {committed.status_code} {committed.content!r}")
    expect(isinstance(committed.parsed, InvokeResponse), f"commit: {committed.parsed}")
    expect(committed.parsed.status == TxState.COMMITTED, f"commit: {committed.parsed.status}")
    gid = committed.parsed.gid

    aborted = invoke.sync_detailed(
        "transfer", client=client, body=InvokeRequest(input_=transfer(5000)),
    )
    expect(aborted.status_code == 422, f"abort: {aborted.status_code} {aborted.content!r}")
    expect(isinstance(aborted.parsed, Problem), f"abort: {aborted.parsed}")
    expect(aborted.parsed.code == "script-aborted", f"abort: {aborted.parsed.code}")
    aborted_gid = aborted.parsed.additional_properties["gid"]

    status = transaction_status.sync(gid, client=client)
    expect(status.status == TxState.COMMITTED, f"status: {status.status}")
    expect(status.plugin.digest == published.parsed.digest, f"status: {status.plugin}")
    expect(status.resolution is None, f"status: {status.resolution}")
    aborted_status = transaction_status.sync(aborted_gid, client=client)
    expect(aborted_status.status == TxState.ABORTED, f"aborted status: {aborted_status.status}")

    page = history.sync(client=client, limit=10)
    gids = [t.gid for t in page.transactions]
    expect(gids == [aborted_gid, gid], f"history: {gids}")
    only_committed = history.sync(client=client, status=TxState.COMMITTED)
    expect([t.gid for t in only_committed.transactions] == [gid], "history ?status=committed")

    listed = in_doubt.sync(client=client)
    expect(listed.entries == [] and listed.failures == [], f"in doubt: {listed}")

    print(json.dumps({"committed": gid, "aborted": aborted_gid}))


main()
