// The demo's "production" service: a small checkout API. Start it with --inspect=127.0.0.1:<port>.
'use strict';
const http = require('node:http');

const users = new Map([
  ['alice', { id: 'alice', name: 'Alice Example', tier: 'gold', password: 'correct-horse-battery-staple' }],
  ['bob', { id: 'bob', name: 'Bob Example', tier: 'basic', password: 'hunter2' }],
]);
const prices = { book: 12.5, lamp: 40, mug: 8 };
let served = 0;

function priceOrder(user, items) {
  const discount = user.tier === 'gold' ? 0.1 : 0;
  let total = 0;
  for (const item of items) {
    total += prices[item] ?? 0;
  }
  const charged = Math.round(total * (1 - discount) * 100) / 100;
  return { user: user.id, items, total, discount, charged };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://service');
  if (url.pathname === '/health') {
    res.end(JSON.stringify({ ok: true, served }));
    return;
  }
  const user = users.get(url.searchParams.get('user') ?? 'bob') ?? users.get('bob');
  const items = (url.searchParams.get('items') ?? 'book').split(',');
  const order = priceOrder(user, items);
  served++;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(order));
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`SERVICE_URL=http://127.0.0.1:${server.address().port}`);
});
