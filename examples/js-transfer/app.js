// wasmtx example in JavaScript: moves an amount between two accounts held by two
// participants. The debit and the credit commit together or not at all.

import * as wasmtx from 'wasmtx';

/** An account on one participant, with a handle on its open transaction. */
class Account {
  constructor(ref) {
    this.participant = wasmtx.Participant.named(ref.participant);
    this.id = ref.account;
  }

  /** The balance; with `lock`, the row stays locked until the transaction ends. */
  balance(lock = false) {
    const dialect = this.participant.dialect;
    const suffix = lock && dialect.name !== 'sqlite' ? ' FOR UPDATE' : '';
    const row = this.participant
      .query(`SELECT balance FROM accounts WHERE id = ${dialect.placeholder(1)}${suffix}`, this.id)
      .first();
    if (row === null) throw this.missing();
    return row.getInt('balance');
  }

  withdraw(amount) {
    const balance = this.balance(true);
    if (balance < amount) {
      throw new wasmtx.Abort(`insufficient funds: ${this} has ${balance}, needs ${amount}`);
    }
    this.add(-amount);
  }

  deposit(amount) {
    this.add(amount);
  }

  add(delta) {
    const d = this.participant.dialect;
    const changed = this.participant.execute(
      `UPDATE accounts SET balance = balance + ${d.placeholder(1)} WHERE id = ${d.placeholder(2)}`,
      delta,
      this.id,
    );
    if (changed === 0) throw this.missing();
    if (changed !== 1) throw new wasmtx.Abort(`${this}: ${changed} rows changed, expected 1`);
  }

  missing() {
    return new wasmtx.Abort(`no account \`${this.id}\` on participant \`${this.participant.name}\``);
  }

  toString() {
    return `${this.id} on ${this.participant.name}`;
  }
}

export const run = wasmtx.run((request) => {
  const amount = request.amount;
  if (!Number.isInteger(amount) || amount <= 0) {
    throw new wasmtx.Abort(`amount must be a positive integer, got ${amount}`);
  }
  const source = new Account(request.from);
  const target = new Account(request.to);
  source.withdraw(amount);
  target.deposit(amount);
  wasmtx.info(`moved ${amount} from ${source} to ${target}`);
  return { from_balance: source.balance(), to_balance: target.balance() };
});
