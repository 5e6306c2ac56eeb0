// npm etcd3 (microsoft/etcd3, gRPC) logging in with `auth: {username, password}` against an
// auth-enabled server: alice may read and write the prefix /a/ only. Prints one line per step;
// the test compares the lines from etcd and from oxetcd.
// Usage: node etcd3_node_auth_smoke.js HOST:PORT   (NODE_PATH points at a node_modules with etcd3)
'use strict';
const { Etcd3 } = require('etcd3');

async function outcome(f) {
  try {
    return ['ok', await f()];
  } catch (e) {
    return [e.constructor.name, e.message];
  }
}

async function main() {
  const hosts = `http://${process.argv[2]}`;
  const say = (...parts) => console.log(parts.map((p) => JSON.stringify(p)).join(' '));
  const alice = new Etcd3({ hosts, auth: { username: 'alice', password: 'alicepw' } });
  const wrong = new Etcd3({ hosts, auth: { username: 'alice', password: 'nope' } });
  const anon = new Etcd3({ hosts });
  try {
    say('put allowed', await outcome(async () => { await alice.put('/a/x').value('1'); return null; }));
    say('get allowed', await outcome(() => alice.get('/a/x').string()));
    say('put forbidden', await outcome(async () => { await alice.put('/z').value('1'); return null; }));
    say('get forbidden', await outcome(() => alice.get('/z').string()));
    say('prefix allowed', await outcome(() => alice.getAll().prefix('/a/').strings()));
    say('wrong password', await outcome(() => wrong.get('/a/x').string()));
    say('no login', await outcome(() => anon.get('/a/x').string()));
  } finally {
    alice.close();
    wrong.close();
    anon.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
