// wasmtx: the JavaScript SDK for writing wasmtx transaction scripts (built with
// `jco componentize --backend quickjs --backend-qjs-disable-async`, pinned in
// package.json). The same shape as the Rust and Python SDKs: participants, typed values,
// rows with getters, logging, and `run` for JSON in and out. Types: wasmtx.d.ts.

import { Participant as WitParticipant, participants as witParticipants } from 'wasmtx:script/sql@0.1.0';
import { log as witLog } from 'wasmtx:script/log@0.1.0';

/** Any wasmtx failure; one that escapes `run` votes abort with its message. */
export class WasmtxError extends Error {}

/** Thrown by a script to abort the global transaction with this reason. */
export class Abort extends WasmtxError {}

/** A statement's failure as the host reported it: `kind` is the WIT error case. */
export class StatementError extends WasmtxError {
  constructor(kind, message, code) {
    super(code ? `${kind} [${code}]: ${message}` : `${kind}: ${message}`);
    this.kind = kind;
    this.code = code;
    this.detail = message;
  }
}

/** A row has no such column, or its value is not of the type asked for. */
export class ColumnError extends WasmtxError {}

function fromWitError(e) {
  const err = e && e.payload !== undefined ? e.payload : e;
  if (err && err.tag === 'database') {
    return new StatementError('database error', err.val.message, err.val.code);
  }
  if (err && err.tag === 'no-such-participant') return new StatementError('no such participant', err.val);
  if (err && typeof err.tag === 'string') return new StatementError(err.tag, err.val);
  return e;
}

function call(f) {
  try {
    return f();
  } catch (e) {
    throw fromWitError(e);
  }
}

/** A JSON document parameter. */
export class Json {
  constructor(document) { this.document = document; }
}

/** A decimal parameter, as exact base-10 text. */
export class Decimal {
  constructor(text) { this.text = String(text); }
  toString() { return this.text; }
}

// jco's QuickJS bindings carry 64-bit integers as Numbers, so only safe integers pass.

function toWit(value, position) {
  if (value === null || value === undefined) return { tag: 'null' };
  if (typeof value === 'boolean') return { tag: 'boolean', val: value };
  if (typeof value === 'bigint') {
    if (value < BigInt(Number.MIN_SAFE_INTEGER) || value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new StatementError('bad parameter', `parameter ${position}: ${value} is past 2^53, which the bindings cannot carry`);
    }
    return { tag: 'int64', val: Number(value) };
  }
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) ? { tag: 'int64', val: value } : { tag: 'float64', val: value };
  }
  if (typeof value === 'string') return { tag: 'text', val: value };
  if (value instanceof Uint8Array) return { tag: 'bytes', val: value };
  if (value instanceof Decimal) return { tag: 'decimal', val: value.text };
  if (value instanceof Json) return { tag: 'json', val: JSON.stringify(value.document) };
  if (value instanceof Date) return { tag: 'timestamp', val: value.getTime() * 1000 };
  throw new StatementError('bad parameter', `parameter ${position}: a ${typeof value} has no SQL type (wrap documents in Json)`);
}

function pad(n, width = 2) { return String(n).padStart(width, '0'); }

function fromWit(value) {
  switch (value.tag) {
    case 'null': return null;
    case 'int64': return Number(value.val);
    case 'decimal': return new Decimal(value.val);
    case 'date': return `${pad(value.val.year, 4)}-${pad(value.val.month)}-${pad(value.val.day)}`;
    case 'time': return timeText(value.val);
    case 'datetime': {
      const d = value.val.date;
      return `${pad(d.year, 4)}-${pad(d.month)}-${pad(d.day)}T${timeText(value.val.time)}`;
    }
    case 'timestamp': return new Date(Number(value.val) / 1000);
    case 'json': return JSON.parse(value.val);
    default: return value.val;
  }
}

function timeText(t) {
  const fraction = t.nanosecond ? `.${pad(t.nanosecond, 9)}` : '';
  return `${pad(t.hour)}:${pad(t.minute)}:${pad(t.second)}${fraction}`;
}

/** A participant's SQL dialect and its placeholder and quoting rules. */
export class Dialect {
  constructor(name) { this.name = name; }
  /** The n-th placeholder (from 1): `$n` for PostgreSQL, `?` otherwise. */
  placeholder(n) { return this.name === 'postgres' ? `$${n}` : '?'; }
  /** The first `count` placeholders, comma-separated. */
  placeholders(count) { return Array.from({ length: count }, (_, i) => this.placeholder(i + 1)).join(', '); }
  /** `ident` quoted as an identifier (backquotes on MySQL, double quotes otherwise). */
  quoteIdent(ident) {
    const q = this.name === 'mysql' ? '`' : '"';
    return q + ident.split(q).join(q + q) + q;
  }
  toString() { return this.name; }
}

/** One result row: `row.get("balance")`, `row.getInt("balance")`, `row.toObject()`. */
export class Row {
  constructor(columns, index, values) {
    this.columns = columns;
    this._index = index;
    this._values = values;
  }
  _position(column) {
    if (typeof column === 'number') {
      if (column < 0 || column >= this.columns.length) throw new ColumnError(`no column ${column}: the row has ${this.columns.length} columns`);
      return column;
    }
    const i = this._index.get(column);
    if (i === undefined) throw new ColumnError(`no column \`${column}\` (columns: ${this.columns.map((c) => c.name).join(', ')})`);
    return i;
  }
  /** The column's value (null for SQL NULL). */
  get(column) { return fromWit(this._values[this._position(column)]); }
  /** The column as an integer (a Number, or a BigInt past 2^53). */
  getInt(column) {
    const v = this.get(column);
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    if (typeof v === 'bigint') return v;
    if (v instanceof Decimal && /^-?\d+$/.test(v.text)) return Number(v.text);
    throw new ColumnError(`column \`${this.columns[this._position(column)].name}\` is ${v === null ? 'NULL' : typeof v}, not an integer`);
  }
  /** The column as text. */
  getString(column) {
    const v = this.get(column);
    if (typeof v !== 'string') throw new ColumnError(`column \`${this.columns[this._position(column)].name}\` is ${v === null ? 'NULL' : typeof v}, not text`);
    return v;
  }
  /** The row as `{column: value}`. */
  toObject() {
    return Object.fromEntries(this.columns.map((c, i) => [c.name, fromWit(this._values[i])]));
  }
}

/** The rows of one query. */
export class Rows {
  constructor(rowSet) {
    this.columns = rowSet.columns.map((c) => ({ name: c.name, typeName: c.typeName }));
    const index = new Map();
    this.columns.forEach((c, i) => { if (!index.has(c.name)) index.set(c.name, i); });
    this.rows = rowSet.rows.map((values) => new Row(this.columns, index, values));
  }
  get length() { return this.rows.length; }
  /** The first row, or null. */
  first() { return this.rows.length ? this.rows[0] : null; }
  [Symbol.iterator]() { return this.rows[Symbol.iterator](); }
}

/** One participant's open transaction; the host commits or rolls back. */
export class Participant {
  constructor(handle) {
    this._handle = handle;
    this.name = handle.name();
    this.dialect = new Dialect(handle.dialect());
  }
  /** The participant with this name; throws a StatementError if there is none. */
  static named(name) { return new Participant(call(() => WitParticipant.named(name))); }
  /** Runs one statement; returns the rows it affected (a Number). */
  execute(statement, ...params) {
    return Number(call(() => this._handle.execute(statement, params.map((p, i) => toWit(p, i + 1)))));
  }
  /** Runs one statement; returns its Rows. */
  query(statement, ...params) {
    return new Rows(call(() => this._handle.query(statement, params.map((p, i) => toWit(p, i + 1)))));
  }
}

/** All participants of the running transaction, in configuration order. */
export function participants() { return witParticipants().map((h) => new Participant(h)); }

/** Writes one line to the host's log at `level` (trace, debug, info, warn, error). */
export function log(level, message) { witLog(level, String(message)); }
export const trace = (m) => log('trace', m);
export const debug = (m) => log('debug', m);
export const info = (m) => log('info', m);
export const warn = (m) => log('warn', m);
export const error = (m) => log('error', m);

/**
 * Wraps `fn(request) -> response` as the component's `run` export, JSON in and out:
 * `export const run = wasmtx.run((request) => ...)`. A thrown WasmtxError (Abort, a
 * failed statement) votes abort with its message. Any other exception is a bug in the
 * script: it is logged at error level (name, message, stack) and the script traps, so the
 * transaction aborts with kind `trap` and an error quoting that log line — as a Python
 * exception or a Rust panic does.
 */
export function run(fn) {
  return (input) => {
    let request;
    try {
      request = JSON.parse(input);
    } catch (e) {
      throw `invalid input JSON: ${e.message}`;
    }
    try {
      return JSON.stringify(fn(request));
    } catch (e) {
      if (e instanceof WasmtxError) throw e.message;
      error(describe(e));
      // jco's bindings hand a thrown string back as the export's error; anything else
      // cannot be converted to one, and the component traps.
      throw Symbol('uncaught exception');
    }
  };
}

function describe(e) {
  if (e instanceof Error) {
    const stack = e.stack ? `\n${e.stack.trimEnd()}` : '';
    return `uncaught ${e.name}: ${e.message}${stack}`;
  }
  return `uncaught exception: ${String(e)}`;
}
