// TEST-ONLY OpenID provider shaped like sipgate's Keycloak (login.sipgate.com).
//
// oidc-provider v9 served from a plain node:http server under Keycloak's layout:
//   http://127.0.0.1:PORT/auth/realms/REALM/.well-known/openid-configuration
//   .../protocol/openid-connect/{auth,token,certs,userinfo,logout,revoke}
// plus a few test-only admin endpoints under /__admin/ (stats, revocation, fault injection).
// State (grants, tokens, sessions) lives in a JSON file when `state_file` is set, so the
// process can be stopped and started again on the same port without losing it.
//
// Usage: node server.mjs [--config FILE.json] [--port N]
// Prints "READY <issuer>" on stdout once it accepts connections.
// Never use any of this (or test-jwks.json, which is a public test key) outside tests.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import * as querystring from 'node:querystring';
import { fileURLToPath } from 'node:url';

import Provider, { errors } from 'oidc-provider';

const here = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------- configuration

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--config') out.config = argv[++i];
    else if (arg === '--port') out.port = argv[++i];
    else throw new Error(`unknown argument ${arg}`);
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const fileConfig = args.config ? JSON.parse(fs.readFileSync(args.config, 'utf8')) : {};

const DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  realm: 'sipgate-apps',
  client: {
    client_id: 'test-client',
    client_secret: 'test-secret',
    redirect_uris: ['http://127.0.0.1:8080/oauth2/callback'],
    // null: any URI with the origin of a redirect_uri (Keycloak's "+" with a wildcard)
    post_logout_redirect_uris: null,
    // any (Keycloak and oidc-provider accept both) | client_secret_post | client_secret_basic
    token_endpoint_auth_method: 'any',
  },
  pkce_required: true,
  auto_consent: true,
  audience: 'https://api.sipgate.com',
  resource_scope: 'all balance:read history:read',
  ttl: {
    access: 300, // sipgate: 300 s
    refresh: 30 * 24 * 3600, // sipgate: 30 days
    id: 300,
    code: 60,
    interaction: 600,
    session: 30 * 24 * 3600,
    grant: 60 * 24 * 3600,
  },
  // sizes of sipgate's tokens: access 1193 B (padded up to this), refresh 1141 B (opaque length)
  access_token_min_bytes: 1193,
  refresh_token_bytes: 1141,
  state_file: null,
  jwks_file: path.join(here, 'test-jwks.json'),
  // TEST-ONLY fixed cookie keys so browser sessions survive a restart
  cookie_keys: ['test-only-cookie-key-1-not-a-secret'],
  exit_with_parent: true,
  log_requests: true,
};

const cfg = {
  ...DEFAULTS,
  ...fileConfig,
  client: { ...DEFAULTS.client, ...(fileConfig.client ?? {}) },
  ttl: { ...DEFAULTS.ttl, ...(fileConfig.ttl ?? {}) },
};
if (args.port !== undefined) cfg.port = Number(args.port);
else if (process.env.IDP_PORT && fileConfig.port === undefined) cfg.port = Number(process.env.IDP_PORT);
if (!['client_secret_post', 'client_secret_basic', 'any'].includes(cfg.client.token_endpoint_auth_method)) {
  throw new Error(`bad token_endpoint_auth_method ${cfg.client.token_endpoint_auth_method}`);
}

const PREFIX = `/auth/realms/${cfg.realm}`;
const OIDC = '/protocol/openid-connect';
const ROUTES = {
  authorization: `${OIDC}/auth`,
  token: `${OIDC}/token`,
  jwks: `${OIDC}/certs`,
  userinfo: `${OIDC}/userinfo`,
  end_session: `${OIDC}/logout`,
  revocation: `${OIDC}/revoke`,
  introspection: `${OIDC}/token/introspect`,
  pushed_authorization_request: `${OIDC}/ext/par/request`,
  code_verification: `${OIDC}/device`,
  device_authorization: `${OIDC}/auth/device`,
  registration: '/clients-registrations/openid-connect',
  backchannel_authentication: `${OIDC}/ext/ciba/auth`,
  challenge: `${OIDC}/challenge`,
  credential: `${OIDC}/credential`,
};
const LOGIN_ACTIONS = `${PREFIX}/login-actions`;

const log = (...parts) => console.log(new Date().toISOString(), ...parts);
const epoch = () => Math.floor(Date.now() / 1000);

// ---------------------------------------------------------------- persistent store

const store = {
  entries: new Map(), // "Model:id" -> { model, id, payload, expiresAt (ms) | null }
  stats: null,
};

function emptyStats() {
  return {
    token: {}, // grant_type -> outcome -> count
    token_auth: {}, // client_secret_post | client_secret_basic | none -> count
    revocation: {}, // outcome -> count
    legacy_logout: {}, // outcome -> count
    end_session: 0,
    authorization: 0,
    logins: {}, // username -> count
  };
}
store.stats = emptyStats();

function bump(obj, key, by = 1) {
  obj[key] = (obj[key] ?? 0) + by;
}

function loadState() {
  if (!cfg.state_file || !fs.existsSync(cfg.state_file)) return;
  const raw = JSON.parse(fs.readFileSync(cfg.state_file, 'utf8'));
  for (const e of raw.entries ?? []) store.entries.set(`${e.model}:${e.id}`, e);
  if (raw.stats) store.stats = { ...emptyStats(), ...raw.stats };
}

function persist() {
  if (!cfg.state_file) return;
  const now = Date.now();
  const entries = [];
  for (const [key, e] of store.entries) {
    if (e.expiresAt !== null && e.expiresAt <= now) store.entries.delete(key);
    else entries.push(e);
  }
  const tmp = `${cfg.state_file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ entries, stats: store.stats }));
  fs.renameSync(tmp, cfg.state_file);
}

function liveEntries(model) {
  const now = Date.now();
  const out = [];
  for (const e of store.entries.values()) {
    if (e.model === model && (e.expiresAt === null || e.expiresAt > now)) out.push(e);
  }
  return out;
}

// adapter in the shape oidc-provider expects; keeps expired entries a little longer
// (clock tolerance) so expiry is reported by the provider, as with its memory adapter
const TOLERANCE_MS = 15_000;

class FileAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  get(id) {
    const e = store.entries.get(this.key(id));
    if (!e) return undefined;
    if (e.expiresAt !== null && e.expiresAt + TOLERANCE_MS <= Date.now()) {
      store.entries.delete(this.key(id));
      return undefined;
    }
    return e;
  }

  async upsert(id, payload, expiresIn) {
    store.entries.set(this.key(id), {
      model: this.model,
      id,
      payload: structuredClone(payload),
      expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null,
    });
    persist();
  }

  async find(id) {
    const e = this.get(id);
    return e ? structuredClone(e.payload) : undefined;
  }

  async findByUid(uid) {
    const e = liveEntries(this.model).find((x) => x.payload.uid === uid);
    return e ? structuredClone(e.payload) : undefined;
  }

  async findByUserCode(userCode) {
    const e = liveEntries(this.model).find((x) => x.payload.userCode === userCode);
    return e ? structuredClone(e.payload) : undefined;
  }

  async consume(id) {
    const e = this.get(id);
    if (e) {
      e.payload.consumed = epoch();
      persist();
    }
  }

  async destroy(id) {
    store.entries.delete(this.key(id));
    persist();
  }

  async revokeByGrantId(grantId) {
    for (const [key, e] of store.entries) {
      if (e.model === this.model && e.payload.grantId === grantId) store.entries.delete(key);
    }
    persist();
  }
}

// every token, code and grant of a grant id, and (optionally) the browser sessions using it
function revokeGrant(grantId, { sessions = false } = {}) {
  let found = false;
  for (const [key, e] of store.entries) {
    if (e.model === 'Grant' && e.id === grantId) {
      store.entries.delete(key);
      found = true;
    } else if (e.payload?.grantId === grantId) {
      store.entries.delete(key);
    } else if (sessions && e.model === 'Session') {
      const auths = Object.values(e.payload.authorizations ?? {});
      if (auths.some((a) => a.grantId === grantId)) store.entries.delete(key);
    }
  }
  return found;
}

function revokeSubject(sub, { sessions = false } = {}) {
  const grantIds = liveEntries('Grant').filter((e) => e.payload.accountId === sub).map((e) => e.id);
  for (const grantId of grantIds) revokeGrant(grantId, { sessions });
  // tokens whose grant entry is already gone
  let tokens = 0;
  for (const [key, e] of store.entries) {
    if (['AccessToken', 'RefreshToken', 'AuthorizationCode'].includes(e.model) && e.payload.accountId === sub) {
      store.entries.delete(key);
      tokens += 1;
    }
    if (sessions && e.model === 'Session' && e.payload.accountId === sub) store.entries.delete(key);
  }
  persist();
  return { grants: grantIds.length, stray_tokens: tokens };
}

// ---------------------------------------------------------------- faults (test-only)

function defaultFaults() {
  return {
    token_status: null, // e.g. 503: the token endpoint answers this status (text/html body)
    token_drop: false, // true: the token endpoint closes the connection without an answer
    token_delay_ms: 0, // delay before the token endpoint answers (or fails)
    count: null, // null: until cleared; N: only the next N token requests are affected
    revoke_enabled: true, // false: the revocation endpoint answers 404 (as if it did not exist)
    access_token_bytes: null, // N: access tokens from now on padded to N bytes with random
    //                            (incompressible) characters instead of 'x'
  };
}
let faults = defaultFaults();

// ---------------------------------------------------------------- pages (no external resources)

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function page(kind, title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body data-idp-page="${kind}" id="keycloak-bg">
<div id="kc-content"><h1 id="kc-page-title">${esc(title)}</h1>
${body}
</div><p><small>sipgate-auth-proxy test IdP (oidc-provider): NOT sipgate's login. Tests and make demo only.</small></p></body></html>`;
}

function loginPage(action, { username = '', error = '' } = {}) {
  return page('login', 'Sign in to your account', `
${error ? `<div id="input-error" class="alert-error">${esc(error)}</div>` : ''}
<form id="kc-form-login" action="${esc(action)}" method="post">
  <label for="username">Username or email</label>
  <input id="username" name="username" type="text" value="${esc(username)}" autofocus autocomplete="off">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="off">
  <input type="submit" id="kc-login" name="login" value="Sign In">
</form>`);
}

function consentPage(action, clientId, scopes) {
  return page('consent', `Do you grant these access privileges to ${clientId}?`, `
<ul id="kc-oauth-scopes">${scopes.map((s) => `<li>${esc(s)}</li>`).join('')}</ul>
<form id="kc-form-consent" action="${esc(action)}" method="post">
  <input type="submit" id="kc-login" name="accept" value="Yes">
  <input type="submit" id="kc-cancel" name="cancel" value="No">
</form>`);
}

// ---------------------------------------------------------------- provider configuration

const jwks = JSON.parse(fs.readFileSync(cfg.jwks_file, 'utf8'));
delete jwks['//'];

const accessMinBytes = Number(cfg.access_token_min_bytes) || 0;
const accessKid = jwks.keys[0].kid;
const b64len = (n) => Math.ceil((n * 4) / 3);
const RS256_SIG_B64 = 342; // 2048-bit RSA

function accountClaims(sub) {
  const given = sub.split(/[@._-]/)[0] || 'test';
  return {
    sub,
    name: `${given} Testperson`,
    given_name: given,
    family_name: 'Testperson',
    preferred_username: sub,
    email: sub.includes('@') ? sub : `${sub}@example.invalid`,
    email_verified: true,
    locale: 'de_DE',
    domain: 'sipgate.de',
    masterSipId: '1234567',
    zoneinfo: 'Europe/Berlin',
  };
}

function providerConfiguration() {
  return {
    adapter: FileAdapter,
    jwks,
    clients: [{
      client_id: cfg.client.client_id,
      client_secret: cfg.client.client_secret,
      redirect_uris: cfg.client.redirect_uris,
      post_logout_redirect_uris: cfg.client.post_logout_redirect_uris ?? [],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic', // oidc-provider takes post too
    }],
    routes: ROUTES,
    scopes: ['openid', 'offline_access'],
    claims: {
      openid: ['sub', 'name', 'given_name', 'family_name', 'preferred_username', 'email',
        'email_verified', 'locale', 'zoneinfo', 'domain', 'masterSipId'],
    },
    conformIdTokenClaims: false,
    cookies: {
      names: { session: 'idp_session', interaction: 'idp_interaction', resume: 'idp_resume' },
      long: { httpOnly: true, sameSite: 'lax', path: `${PREFIX}/` },
      short: { httpOnly: true, sameSite: 'lax', path: `${PREFIX}/` },
      keys: cfg.cookie_keys,
    },
    clientBasedCORS: () => false,
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      async claims() { return accountClaims(sub); },
    }),
    interactions: {
      url: async (ctx, interaction) => {
        const step = interaction.prompt.name === 'login' ? 'authenticate' : interaction.prompt.name;
        return `${LOGIN_ACTIONS}/${step}/${interaction.uid}`;
      },
    },
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const grant = await ctx.oidc.provider.Grant.find(grantId);
        if (grant) return grant;
      }
      if (!cfg.auto_consent || !ctx.oidc.session.accountId) return undefined;
      // consent switched off, as for sipgate's first-party style clients: grant what was asked
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      const oidcScopes = [...ctx.oidc.requestParamOIDCScopes];
      if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
      const requested = ctx.oidc.requestParamScopes;
      for (const [indicator, rs] of Object.entries(ctx.oidc.resourceServers ?? {})) {
        const scope = (rs.scope ?? '').split(' ').filter((s) => requested.has(s));
        if (scope.length) grant.addResourceScope(indicator, scope.join(' '));
      }
      await grant.save();
      return grant;
    },
    pkce: { required: () => Boolean(cfg.pkce_required) },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    // default expiresWithSession: tokens are bound to the browser session at the IdP (as
    // Keycloak's are to its SSO session), so a logout there revokes them; offline_access not
    formats: {
      bitsOfOpaqueRandomness: (ctx, token) => (
        token.kind === 'RefreshToken' && cfg.refresh_token_bytes > 43 ? cfg.refresh_token_bytes * 6 : 256
      ),
      customizers: {
        async jwt(ctx, token, jwt) {
          // Keycloak-like claims, then padding up to sipgate's size
          const p = jwt.payload;
          p.typ = 'Bearer';
          p.azp = p.client_id;
          p.session_state = token.grantId;
          p.acr = '1';
          p.realm_access = { roles: ['offline_access', 'uma_authorization'] };
          p.preferred_username = p.sub;
          const header = JSON.stringify({ alg: 'RS256', typ: 'at+jwt', kid: accessKid });
          const size = () => b64len(header.length) + 1 + b64len(JSON.stringify(p).length) + 1 + RS256_SIG_B64;
          const minBytes = faults.access_token_bytes || accessMinBytes;
          if (minBytes && size() < minBytes) {
            p.test_padding = '';
            const missing = minBytes - size();
            const chars = Math.ceil((missing * 3) / 4);
            // "random": as incompressible as a token full of roles and groups
            const random = faults.access_token_bytes || cfg.access_token_padding === 'random';
            if (missing > 0 && random) {
              p.test_padding = crypto.randomBytes(chars).toString('base64url').slice(0, chars);
            } else if (missing > 0) p.test_padding = 'x'.repeat(chars);
          }
        },
      },
    },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          // Keycloak logs out without asking when a valid id_token_hint is given
          const auto = Boolean(ctx.oidc.params.id_token_hint);
          const withLogout = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>');
          ctx.type = 'html';
          ctx.body = page('logout', 'Do you want to log out?', `${withLogout}
<button type="submit" id="kc-logout" form="op.logoutForm">Logout</button>
${auto ? '<script>document.getElementById("op.logoutForm").submit()</script>' : ''}`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = page('logged-out', 'You are logged out', '');
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => cfg.audience,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          if (resourceIndicator !== cfg.audience) throw new errors.InvalidTarget();
          return {
            scope: cfg.resource_scope,
            audience: cfg.audience,
            accessTokenTTL: cfg.ttl.access,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      AccessToken: cfg.ttl.access,
      AuthorizationCode: cfg.ttl.code,
      IdToken: cfg.ttl.id,
      RefreshToken: cfg.ttl.refresh,
      Interaction: cfg.ttl.interaction,
      Session: cfg.ttl.session,
      Grant: cfg.ttl.grant,
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('error', 'We are sorry...', Object.entries(out)
        .map(([k, v]) => `<p><strong>${esc(k)}</strong>: <span class="${esc(k)}">${esc(v)}</span></p>`).join(''));
    },
  };
}

// ---------------------------------------------------------------- HTTP plumbing

function readBody(req, limit = 64 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, body, type = 'application/json') {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': type === 'application/json' ? 'application/json' : `${type}; charset=utf-8`,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function basicCredentials(req) {
  const h = req.headers.authorization;
  if (!h || !/^basic /i.test(h)) return null;
  const decoded = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return null;
  const dec = (s) => decodeURIComponent(s.replace(/\+/g, '%20'));
  try {
    return { id: dec(decoded.slice(0, i)), secret: dec(decoded.slice(i + 1)) };
  } catch {
    return null;
  }
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

function takeFault() {
  const active = faults.token_status !== null || faults.token_drop || faults.token_delay_ms > 0;
  if (!active) return null;
  if (faults.count !== null) {
    if (faults.count <= 0) return null;
    faults.count -= 1;
  }
  return { status: faults.token_status, drop: faults.token_drop, delay: faults.token_delay_ms };
}

let provider;
let callback;

async function handleAdmin(req, res, pathname) {
  const body = req.method === 'POST' ? await readBody(req) : '';
  const json = body ? JSON.parse(body) : {};
  if (req.method === 'GET' && pathname === '/__admin/stats') return send(res, 200, store.stats);
  if (req.method === 'POST' && pathname === '/__admin/stats/reset') {
    store.stats = emptyStats();
    persist();
    return send(res, 200, store.stats);
  }
  if (req.method === 'POST' && pathname === '/__admin/revoke-subject') {
    if (typeof json.sub !== 'string') return send(res, 400, { error: 'sub required' });
    return send(res, 200, revokeSubject(json.sub, { sessions: Boolean(json.sessions) }));
  }
  if (req.method === 'POST' && pathname === '/__admin/revoke-refresh-token') {
    const rt = typeof json.refresh_token === 'string'
      ? await provider.RefreshToken.find(json.refresh_token, { ignoreExpiration: true }) : undefined;
    const revoked = rt ? revokeGrant(rt.grantId, { sessions: Boolean(json.sessions) }) : false;
    persist();
    return send(res, 200, { revoked: Boolean(rt), grant_found: revoked });
  }
  if (pathname === '/__admin/faults') {
    if (req.method === 'POST') faults = { ...defaultFaults(), ...json };
    return send(res, 200, faults);
  }
  if (req.method === 'GET' && pathname === '/__admin/grants') {
    return send(res, 200, liveEntries('Grant').map((e) => ({ id: e.id, sub: e.payload.accountId })));
  }
  return send(res, 404, { error: 'not_found' });
}

async function handleInteraction(req, res, pathname) {
  const m = pathname.slice(LOGIN_ACTIONS.length).match(/^\/(authenticate|consent)\/([^/]+)$/);
  if (!m) return send(res, 404, page('error', 'Page not found', ''), 'text/html');
  const [, step, uid] = m;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, page('error', 'We are sorry...', `<p class="error">${esc(err.message)}</p>`), 'text/html');
  }
  if (details.uid !== uid) {
    return send(res, 400, page('error', 'We are sorry...', '<p class="error">interaction mismatch</p>'), 'text/html');
  }
  const action = pathname;
  if (req.method === 'GET') {
    if (step === 'authenticate') {
      return send(res, 200, loginPage(action, { username: details.params.login_hint ?? '' }), 'text/html');
    }
    const d = details.prompt.details;
    const scopes = [...(d.missingOIDCScope ?? []),
      ...Object.values(d.missingResourceScopes ?? {}).flat()];
    return send(res, 200, consentPage(action, details.params.client_id, scopes), 'text/html');
  }
  if (req.method !== 'POST') return send(res, 405, { error: 'method_not_allowed' });
  const form = querystring.parse(await readBody(req));
  if (step === 'authenticate') {
    const username = String(form.username ?? '').trim();
    if (!username || !form.password) {
      return send(res, 200, loginPage(action, { username, error: 'Invalid username or password.' }), 'text/html');
    }
    bump(store.stats.logins, username);
    persist();
    return provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
  }
  if (form.cancel !== undefined) {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User denied consent',
    }, { mergeWithLastSubmission: false });
  }
  const { prompt: { details: d }, params, session } = details;
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (!grant) grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  for (const [indicator, scope] of Object.entries(d.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scope.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

// Keycloak's legacy logout: POST .../logout with client credentials and refresh_token → 204
async function handleLegacyLogout(req, res, form) {
  const basic = basicCredentials(req);
  const id = basic?.id ?? form.client_id;
  const secret = basic?.secret ?? form.client_secret;
  if (id !== cfg.client.client_id || secret !== cfg.client.client_secret) {
    bump(store.stats.legacy_logout, 'unauthorized_client');
    persist();
    return send(res, 401, { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' });
  }
  const rt = await provider.RefreshToken.find(String(form.refresh_token), { ignoreExpiration: true });
  if (!rt || rt.clientId !== id || rt.consumed) {
    if (rt?.consumed) revokeGrant(rt.grantId, { sessions: true });
    bump(store.stats.legacy_logout, 'invalid_grant');
    persist();
    return send(res, 400, { error: 'invalid_grant', error_description: 'Invalid refresh token' });
  }
  revokeGrant(rt.grantId, { sessions: true });
  bump(store.stats.legacy_logout, 'success');
  persist();
  res.writeHead(204, { 'cache-control': 'no-store' });
  return res.end();
}

// oidc-provider, like Keycloak, accepts client_secret_basic and client_secret_post alike;
// with a strict token_endpoint_auth_method the other one is refused here
function clientAuthMethod(req, form) {
  if (basicCredentials(req)) return 'client_secret_basic';
  return form.client_secret !== undefined ? 'client_secret_post' : 'none';
}

function wrongClientAuth(method) {
  const wanted = cfg.client.token_endpoint_auth_method;
  return wanted !== 'any' && method !== 'none' && method !== wanted;
}

async function handleProvider(req, res, pathname, search) {
  const sub = pathname.slice(PREFIX.length) || '/';
  const meta = {};
  req.idpMeta = meta;
  if (req.method === 'POST' && [ROUTES.token, ROUTES.revocation, ROUTES.end_session].includes(sub)) {
    const raw = await readBody(req);
    const form = querystring.parse(raw);
    if (sub === ROUTES.end_session && form.refresh_token !== undefined) {
      return handleLegacyLogout(req, res, form);
    }
    if (sub === ROUTES.revocation && !faults.revoke_enabled) {
      bump(store.stats.revocation, 'disabled_404');
      persist();
      return send(res, 404, { error: 'RESTEASY003210: Could not find resource for full path' });
    }
    const authMethod = clientAuthMethod(req, form);
    const badAuth = sub !== ROUTES.end_session && wrongClientAuth(authMethod);
    const invalidClient = {
      error: 'invalid_client',
      error_description: `client authentication must use ${cfg.client.token_endpoint_auth_method}`,
    };
    if (sub === ROUTES.revocation && badAuth) {
      bump(store.stats.revocation, 'invalid_client');
      persist();
      return send(res, 401, invalidClient);
    }
    if (sub === ROUTES.token) {
      meta.grantType = typeof form.grant_type === 'string' ? form.grant_type : '(none)';
      bump(store.stats.token_auth, authMethod);
      if (badAuth) {
        bump(store.stats.token[meta.grantType] ??= {}, 'invalid_client');
        persist();
        return send(res, 401, invalidClient);
      }
      const fault = takeFault();
      if (fault) {
        if (fault.delay) await sleep(fault.delay);
        if (fault.drop) {
          bump(store.stats.token[meta.grantType] ??= {}, 'injected_drop');
          persist();
          return req.socket.destroy();
        }
        if (fault.status) {
          bump(store.stats.token[meta.grantType] ??= {}, `injected_${fault.status}`);
          persist();
          return send(res, fault.status, '<html><body><h1>503 Service Unavailable</h1></body></html>', 'text/html');
        }
      }
    }
    // oidc-provider reads an already-consumed body from req.body
    req.body = querystring.stringify(form);
    req.headers['content-length'] = String(Buffer.byteLength(req.body));
  }
  let query = search;
  if (sub === ROUTES.authorization && req.method === 'GET') {
    // Keycloak accepts a nonce without the openid scope (there is just no id_token);
    // oidc-provider refuses it, so drop it here
    const params = new URLSearchParams(search);
    if (params.has('nonce') && !(params.get('scope') ?? '').split(' ').includes('openid')) {
      params.delete('nonce');
      query = `?${params}`;
    }
  }
  req.url = sub + query;
  req.baseUrl = PREFIX; // oidc-provider builds its URLs with this mount path
  return callback(req, res);
}

// Keycloak adds session_state to the authorization response: clients must ignore it
function addSessionState(ctx) {
  const location = ctx.response.get('location');
  if (!location) return;
  let url;
  try {
    url = new URL(location);
  } catch {
    return;
  }
  const target = `${url.origin}${url.pathname}`;
  if (!url.searchParams.has('code') || !cfg.client.redirect_uris.includes(target)) return;
  url.searchParams.set('session_state', crypto.randomUUID());
  ctx.set('location', url.href);
}

// koa middleware inside the provider: stats and Keycloak's extra token response members
async function keycloakish(ctx, next) {
  await next();
  const meta = ctx.req.idpMeta ?? {};
  if (ctx.path === ROUTES.token && ctx.method === 'POST') {
    const body = ctx.body && typeof ctx.body === 'object' ? ctx.body : {};
    const outcome = ctx.status === 200 ? 'success' : (body.error ?? `http_${ctx.status}`);
    bump(store.stats.token[meta.grantType ?? '(none)'] ??= {}, outcome);
    if (ctx.status === 200 && body.refresh_token) {
      const rt = await provider.RefreshToken.find(body.refresh_token);
      if (rt) {
        body.refresh_expires_in = Math.max(0, rt.exp - epoch());
        body.session_state = rt.grantId;
      }
      body['not-before-policy'] = 0;
    }
    persist();
  } else if (ctx.path === ROUTES.revocation && ctx.method === 'POST') {
    const body = ctx.body && typeof ctx.body === 'object' ? ctx.body : {};
    bump(store.stats.revocation, ctx.status === 200 ? 'success' : (body.error ?? `http_${ctx.status}`));
    persist();
  } else if (ctx.path === ROUTES.authorization || ctx.path.startsWith(`${ROUTES.authorization}/`)) {
    if (ctx.path === ROUTES.authorization) store.stats.authorization += 1;
    addSessionState(ctx);
    persist();
  } else if (ctx.path.startsWith(ROUTES.end_session)) {
    if (ctx.path === ROUTES.end_session) store.stats.end_session += 1;
    persist();
  }
}

async function handle(req, res) {
  const started = Date.now();
  const url = new URL(req.url, 'http://idp.invalid');
  const { pathname, search } = url;
  if (cfg.log_requests) {
    res.on('finish', () => log(req.method, pathname, res.statusCode, `${Date.now() - started}ms`));
  }
  try {
    if (pathname.startsWith('/__admin/')) return await handleAdmin(req, res, pathname);
    if (pathname.startsWith(`${LOGIN_ACTIONS}/`)) return await handleInteraction(req, res, pathname);
    if (pathname === PREFIX || pathname.startsWith(`${PREFIX}/`)) return await handleProvider(req, res, pathname, search);
    return send(res, 404, { error: 'not_found' });
  } catch (err) {
    log('ERROR', err.stack ?? err);
    if (!res.headersSent) return send(res, 500, { error: 'server_error' });
    return res.destroy();
  }
}

// ---------------------------------------------------------------- start

loadState();

const server = http.createServer((req, res) => { handle(req, res); });
server.keepAliveTimeout = 5000;

function shutdown(signal) {
  log(`stopping (${signal})`);
  try {
    persist();
  } finally {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  }
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

if (cfg.exit_with_parent) {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) shutdown('parent gone');
  }, 1000).unref();
}

server.on('error', (err) => {
  console.error(`FAILED ${err.code ?? ''} ${err.message}`);
  process.exit(1);
});

server.listen(cfg.port, cfg.host, () => {
  const { port } = server.address();
  const issuer = `http://${cfg.host}:${port}${PREFIX}`;
  provider = new Provider(issuer, providerConfiguration());
  provider.use(keycloakish);
  const origins = new Set(cfg.client.redirect_uris.map((u) => new URL(u).origin));
  if (cfg.client.post_logout_redirect_uris === null) {
    // Keycloak "+" with a wildcard: any URI on the origin of a registered redirect_uri
    provider.Client.prototype.postLogoutRedirectUriAllowed = function allowed(uri) {
      try {
        return origins.has(new URL(uri).origin);
      } catch {
        return false;
      }
    };
  }
  provider.on('server_error', (ctx, err) => log('server_error', err.stack ?? err));
  callback = provider.callback();
  console.log(`READY ${issuer}`);
});
