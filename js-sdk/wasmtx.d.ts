// Types of the wasmtx JavaScript SDK (wasmtx.js), written once from wit/script.wit.

/** A SQL parameter: null, boolean, number (a safe integer is int64, else float64), bigint
 * (int64, within 2^53), string, bytes, Decimal, Json, or a Date (timestamptz). */
export type Param = null | undefined | boolean | number | bigint | string | Uint8Array | Decimal | Json | Date;
/** A SQL value from a result row: dates and times come back as ISO text, a timestamptz as a
 * Date, an int64 as a number, a JSON document parsed. */
export type Value = null | boolean | number | bigint | string | Uint8Array | Decimal | Date | unknown;

export class WasmtxError extends Error {}
export class Abort extends WasmtxError {}
export class StatementError extends WasmtxError {
  /** The WIT error case: `database error`, `forbidden`, `limit-exceeded`, `bad-parameter`, `no such participant`. */
  kind: string;
  /** The database's error code (SQLSTATE or MySQL number), when it gave one. */
  code?: string;
  detail: string;
}
export class ColumnError extends WasmtxError {}

export class Json { constructor(document: unknown); document: unknown; }
export class Decimal { constructor(text: string | number); text: string; }

export class Dialect {
  name: 'postgres' | 'mysql' | 'sqlite';
  placeholder(n: number): string;
  placeholders(count: number): string;
  quoteIdent(ident: string): string;
}

export interface Column { name: string; typeName: string; }

export class Row {
  columns: Column[];
  get(column: string | number): Value;
  getInt(column: string | number): number;
  getString(column: string | number): string;
  toObject(): Record<string, Value>;
}

export class Rows implements Iterable<Row> {
  columns: Column[];
  rows: Row[];
  readonly length: number;
  first(): Row | null;
  [Symbol.iterator](): Iterator<Row>;
}

export class Participant {
  static named(name: string): Participant;
  name: string;
  dialect: Dialect;
  execute(statement: string, ...params: Param[]): number;
  query(statement: string, ...params: Param[]): Rows;
}

export function participants(): Participant[];

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export function log(level: Level, message: string): void;
export function trace(message: string): void;
export function debug(message: string): void;
export function info(message: string): void;
export function warn(message: string): void;
export function error(message: string): void;

/**
 * The component's `run` export from `fn(request) -> response`, JSON in and out. A thrown
 * WasmtxError aborts with its message; any other exception is logged at error level and
 * traps.
 */
export function run<I = any, O = unknown>(fn: (request: I) => O): (input: string) => string;
