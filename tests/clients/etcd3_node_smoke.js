// npm etcd3 (microsoft/etcd3, gRPC) against one server: put/get, prefixes, a transaction,
// leases, a prefix watch, a lock and an election (campaign, leader, resign). Prints one line
// per step; the test compares the lines from etcd and from oxetcd.
// Usage: node etcd3_node_smoke.js HOST:PORT   (NODE_PATH points at a node_modules with etcd3)
'use strict';
const { Etcd3 } = require('etcd3');

async function main() {
  const client = new Etcd3({ hosts: `http://${process.argv[2]}` });
  const say = (...parts) => console.log(parts.map((p) => JSON.stringify(p)).join(' '));
  try {
    await client.put('/js/a').value('1');
    say('get', await client.get('/js/a').string());
    say('get missing', await client.get('/js/none').string());
    await client.put('/js/b').value('2');
    say('prefix', await client.getAll().prefix('/js/').strings());
    const txn = await client.if('/js/a', 'Create', '==', 0).then(client.put('/js/a').value('x')).commit();
    say('txn create==0 on existing', txn.succeeded);

    const lease = client.lease(30);
    await lease.put('/js/l').value('x');
    say('leased keys', await client.getAll().prefix('/js/l').keys('utf8'));
    say('keepalive ttl in range', ((t) => t > 0 && t <= 30)(Number((await lease.keepaliveOnce()).TTL)));
    await lease.revoke();
    say('leased key after revoke', await client.get('/js/l').string());

    const watcher = await client.watch().prefix('/js/w').create();
    const events = [];
    const done = new Promise((resolve) => {
      watcher.on('put', (kv) => { events.push(['put', kv.key.toString(), kv.value.toString()]); if (events.length === 2) resolve(); });
      watcher.on('delete', (kv) => { events.push(['delete', kv.key.toString()]); if (events.length === 2) resolve(); });
    });
    await client.put('/js/w1').value('v');
    await client.delete().key('/js/w1');
    await done;
    await watcher.cancel();
    say('events', events);

    const lock = client.lock('jslock').ttl(30);
    await lock.acquire();
    say('lock keys while held', (await client.getAll().prefix('jslock').keys()).length);
    await lock.release();
    say('lock keys after release', (await client.getAll().prefix('jslock').keys()).length);

    const election = client.election('jsel', 30);
    const campaign = election.campaign('candidate-1');
    await new Promise((resolve, reject) => { campaign.on('elected', resolve); campaign.on('error', reject); });
    say('leader', await election.leader());
    await campaign.proclaim('candidate-1b');
    say('leader after proclaim', await election.leader());
    await campaign.resign();
    say('leader after resign', await election.leader());

    await client.delete().prefix('/js/');
    say('prefix after delete', await client.getAll().prefix('/js/').strings());
  } finally {
    client.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
