// TEST-ONLY: sipgate's official Node.js library (sipgateio), configured with a
// proxy-issued client credential exactly as it would be with a PAT, pointed at the
// proxy. sipgateio has no base-URL option (https://api.sipgate.com/v2 is fixed in
// dist/core/sipgateIOClient/sipgateIOClient.js), so its own axios.create is wrapped
// while the client is made; nothing else of the library is touched.
//
//   SIPGATE_BASE=http://127.0.0.1:PORT/v2 TOKEN_ID=token-… TOKEN=<uuid> node client.js read|sms
// Prints one JSON line: {"ok": true, ...} or {"ok": false, "error": "..."}.
'use strict';
const path = require('path');

const base = process.env.SIPGATE_BASE;
const libraryDir = path.dirname(require.resolve('sipgateio'));
const axios = require(require.resolve('axios', { paths: [libraryDir] }));
const create = axios.create;
axios.create = (config) => create.call(axios, { ...config, baseURL: base, proxy: false });
const { sipgateIO, createSMSModule } = require('sipgateio');
const client = sipgateIO({ tokenId: process.env.TOKEN_ID, token: process.env.TOKEN });
axios.create = create;

async function read() {
  const webuserId = await client.getAuthenticatedWebuserId(); // GET /authorization/userinfo
  const echoed = await client.get('/history?limit=2'); // the test double echoes the request
  return { webuserId: webuserId ?? null, echoed };
}

async function sms() {
  await createSMSModule(client).send({ smsId: 's0', to: '+4915799912345', message: 'hello' });
  return {};
}

const actions = { read, sms };
actions[process.argv[2]]()
  .then((result) => console.log(JSON.stringify({ ok: true, ...result })))
  .catch((error) => console.log(JSON.stringify({ ok: false, error: error.message })));
