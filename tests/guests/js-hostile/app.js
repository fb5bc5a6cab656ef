// A JavaScript script that misbehaves on request, for the sandbox tests: the input's `do`
// names what it does.

import * as wasmtx from 'wasmtx';

function recurse(depth) {
  return recurse(depth + 1) + 1;
}

export const run = wasmtx.run((request) => {
  switch (request.do) {
    case 'loop':
      for (;;) {}
    case 'memory': {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
    }
    case 'output':
      return { padding: 'x'.repeat(4 << 20) };
    case 'log':
      for (let i = 0; i < 20000; i++) wasmtx.info('chatter '.repeat(8));
      return { logged: true };
    case 'stack':
      return { depth: recurse(0) };
    case 'ignore-failure': {
      const participant = wasmtx.participants()[0];
      participant.execute("INSERT INTO accounts (id, balance) VALUES ('carol', 5)");
      try {
        participant.execute('INSERT INTO no_such_table VALUES (1)');
      } catch (e) {
        wasmtx.warn(`ignoring: ${e.message}`);
      }
      return { ignored: true };
    }
    default:
      throw new wasmtx.Abort(`unknown action ${JSON.stringify(request.do)}`);
  }
});
