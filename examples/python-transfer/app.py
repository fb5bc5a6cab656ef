"""wasmtx example in Python: moves an amount between two accounts held by two
participants. The debit and the credit commit together or not at all."""

import wasmtx


class Account:
    """An account on one participant, with a handle on its open transaction."""

    def __init__(self, ref: dict):
        self.participant = wasmtx.Participant.named(ref["participant"])
        self.id = ref["account"]

    def balance(self, lock: bool = False) -> int:
        """The current balance; with ``lock``, the row stays locked until the global
        transaction ends (``FOR UPDATE``; SQLite locks the whole database anyway)."""
        dialect = self.participant.dialect
        suffix = " FOR UPDATE" if lock and dialect is not wasmtx.Dialect.SQLITE else ""
        rows = self.participant.query(
            f"SELECT balance FROM accounts WHERE id = {dialect.placeholder(1)}{suffix}", self.id
        )
        row = rows.first()
        if row is None:
            raise self.missing()
        return row.get_int("balance")

    def withdraw(self, amount: int) -> None:
        """Takes ``amount`` out, refusing to overdraw."""
        balance = self.balance(lock=True)
        if balance < amount:
            raise wasmtx.Abort(f"insufficient funds: {self} has {balance}, needs {amount}")
        self.add(-amount)

    def deposit(self, amount: int) -> None:
        self.add(amount)

    def add(self, delta: int) -> None:
        """Adds ``delta`` to the balance; exactly one row must change."""
        dialect = self.participant.dialect
        changed = self.participant.execute(
            f"UPDATE accounts SET balance = balance + {dialect.placeholder(1)} "
            f"WHERE id = {dialect.placeholder(2)}",
            delta,
            self.id,
        )
        if changed == 0:
            raise self.missing()
        if changed != 1:
            raise wasmtx.Abort(f"{self}: {changed} rows changed, expected 1")

    def missing(self) -> wasmtx.Abort:
        return wasmtx.Abort(f"no account `{self.id}` on participant `{self.participant.name}`")

    def __str__(self) -> str:
        return f"{self.id} on {self.participant.name}"


@wasmtx.run
def transfer(request: dict) -> dict:
    amount = request["amount"]
    if not isinstance(amount, int) or amount <= 0:
        raise wasmtx.Abort(f"amount must be a positive integer, got {amount}")
    source, target = Account(request["from"]), Account(request["to"])
    source.withdraw(amount)
    target.deposit(amount)
    wasmtx.info(f"moved {amount} from {source} to {target}")
    return {"from_balance": source.balance(), "to_balance": target.balance()}
