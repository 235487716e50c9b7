'use strict'
// Headwater's actions runtime worker: runs Segment's published Actions destinations
// (@segment/action-destinations, required as published) for the Python pool in pool.py.
//
// Usage: node runtime.js <actions dir>   (the directory holding node_modules/)
// Environment: HEADWATER_REQUEST_REDIRECTS  JSON map URL prefix -> URL prefix
//              HEADWATER_RUNTIME_TEST_OPS=1 enables the test-only ops (spin, allocate, log, exit)
// Frames on stdin/stdout: 4-byte big-endian length, then a UTF-8 JSON object. stdout carries
// frames only: console output goes to stderr, which the pool logs.

const { createRequire } = require('module')
const path = require('path')
const fs = require('fs')
const { AsyncLocalStorage } = require('async_hooks')

const BODY_CAP = 8192
const frameOut = process.stdout
for (const name of ['log', 'info', 'debug', 'trace']) console[name] = console.error

const actionsDir = process.argv[2]
if (!actionsDir) {
  console.error('usage: node runtime.js <actions dir>')
  process.exit(2)
}
const packageRequire = createRequire(path.join(path.resolve(actionsDir), 'package.json'))
const redirects = Object.entries(JSON.parse(process.env.HEADWATER_REQUEST_REDIRECTS || '{}')).sort(
  (a, b) => b[0].length - a[0].length
)
const testOps = process.env.HEADWATER_RUNTIME_TEST_OPS === '1'

// --- the request client: cross-fetch as actions-core sees it, wrapped before anything loads it.
const corePath = packageRequire.resolve('@segment/actions-core')
const crossFetchPath = packageRequire.resolve('cross-fetch', { paths: [path.dirname(corePath)] })
const realFetch = packageRequire(crossFetchPath)
const calls = new AsyncLocalStorage() // store: {exchanges: []} of the call being run
// The default agents keep sockets alive (Node 22) but close all but 256 free ones: with hundreds
// of requests in flight that means a new connection for most requests. Keep more.
const http = require('http')
const https = require('https')
const agentOptions = { keepAlive: true, maxFreeSockets: 1024 }
http.globalAgent = new http.Agent(agentOptions)
https.globalAgent = new https.Agent(agentOptions)

function rewrite(url) {
  for (const [prefix, target] of redirects) {
    if (url.startsWith(prefix)) return target + url.slice(prefix.length)
  }
  return url
}

function errorCode(error) {
  if (!error) return null
  if (error.code) return String(error.code)
  if (error.errno) return String(error.errno)
  if (error.name === 'AbortError' || error.type === 'aborted') return 'ETIMEDOUT'
  return error.name || 'Error'
}

function headersObject(headers) {
  const raw = headers.raw() // node-fetch's own map, name -> [values]: far cheaper than iterating
  const out = {}
  for (const name in raw) out[name] = raw[name].join(', ')
  return out
}

async function recordingFetch(input, init) {
  let request =
    input instanceof realFetch.Request && init === undefined ? input : new realFetch.Request(input, init)
  const asked = request.url
  const called = rewrite(asked)
  let body = request.body
  const stream = body != null && !Buffer.isBuffer(body)
  if (stream) body = await request.buffer() // form data: read once, to record it and to send it
  if (called !== asked || stream) {
    const headers = new realFetch.Headers(request.headers)
    if (called !== asked && headers.has('host')) headers.set('host', new URL(called).host)
    const sameProtocol = new URL(called).protocol === new URL(asked).protocol
    request = new realFetch.Request(called, {
      method: request.method,
      headers,
      body,
      redirect: request.redirect,
      signal: request.signal,
      follow: request.follow,
      compress: request.compress,
      size: request.size,
      timeout: request.timeout,
      agent: sameProtocol ? request.agent : undefined // an https agent cannot carry http
    })
  }
  const exchange = {
    request: {
      method: request.method,
      url: asked,
      headers: headersObject(request.headers),
      body: body == null ? null : body.toString('utf8')
    },
    response: null,
    error: null,
    calledUrl: called === asked ? null : called
  }
  const store = calls.getStore()
  if (store) store.exchanges.push(exchange)
  let response
  let content
  try {
    response = await realFetch(request)
    content = await response.buffer()
  } catch (error) {
    exchange.error = errorCode(error)
    throw error
  }
  exchange.response = {
    status: response.status,
    headers: headersObject(response.headers),
    body: content.subarray(0, BODY_CAP).toString('utf8')
  }
  // the body is read already (to record it): hand the destination an equal, unread response
  return new realFetch.Response(content, {
    url: response.url,
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
    counter: response.redirected ? 1 : 0
  })
}
Object.assign(recordingFetch, realFetch)
recordingFetch.default = recordingFetch
recordingFetch.fetch = recordingFetch
require.cache[crossFetchPath].exports = recordingFetch
packageRequire.cache[crossFetchPath].exports = recordingFetch

const core = packageRequire('@segment/actions-core')
const { Destination } = core
const destinationsRoot = path.join(
  path.dirname(packageRequire.resolve('@segment/action-destinations/package.json')),
  'dist',
  'destinations'
)

// --- destinations, loaded one by one on first use and kept. Requiring the package's index
// loads all 214 (~0.8 s, ~30 MB more); only the ones the index registers are served (its
// folder also holds unreleased ones), read from the index's text, else from its manifest.
const loaded = new Map() // directory -> Destination | null
let registered = null

function registeredDirectories() {
  if (registered) return registered
  const text = fs.readFileSync(path.join(destinationsRoot, 'index.js'), 'utf8')
  const found = [...text.matchAll(/register\('[^']+', '\.\/([^']+)'\)/g)].map((m) => m[1])
  if (found.length) registered = new Set(found)
  else {
    const { manifest } = packageRequire('@segment/action-destinations')
    registered = new Set(Object.values(manifest).map((entry) => entry.directory))
  }
  return registered
}

function destinationFor(directory) {
  if (loaded.has(directory)) return loaded.get(directory)
  let destination = null
  if (registeredDirectories().has(directory)) {
    const definition = packageRequire(path.join(destinationsRoot, directory)).default
    if (definition && definition.name && typeof definition.actions === 'object') {
      destination = new Destination(definition)
      // actions-core keeps every response on the instance; one long-lived instance must not
      destination.responses = { push() {} }
    }
  }
  loaded.set(directory, destination)
  return destination
}

// --- outcomes
const MULTISTATUS_TYPES = {
  PAYLOAD_VALIDATION_FAILED: 'PayloadValidationError',
  RETRYABLE_ERROR: 'RetryableError',
  INVALID_AUTHENTICATION: 'InvalidAuthenticationError'
}

function failure(error, exchanges) {
  let errorType = (error && error.constructor && error.constructor.name) || 'Error'
  let errorCode = error && error.code != null ? String(error.code) : null
  let status = error && typeof error.status === 'number' ? error.status : null
  if (status === null && error && error.response && typeof error.response.status === 'number') {
    status = error.response.status
  }
  if (errorType === 'AggregateAjvError' || errorType === 'ValidationError') {
    // actions-core's schema validation: Segment reports it as a payload validation failure
    errorType = 'PayloadValidationError'
    errorCode = 'PAYLOAD_VALIDATION_FAILED'
    status = 400
  }
  if (errorCode === null && status !== null) errorCode = core.getErrorCodeFromHttpStatus(status)
  return {
    status,
    errorType: statusOnly(errorType, errorCode, status) ? 'HTTPError' : errorType,
    errorCode,
    message: String((error && error.message) || error),
    exchanges
  }
}

// An error whose code is only actions-core's name for its HTTP status (BAD_REQUEST for 400)
// says no more than the status: it is reported as an HTTP error, so a vendor's 400 reads the
// same whether the destination threw it or answered it in a batch's multistatus.
const SPECIFIC_TYPES = new Set(['PayloadValidationError', 'InvalidAuthenticationError', 'RetryableError'])
function statusOnly(errorType, errorCode, status) {
  return status !== null && status >= 400 && !SPECIFIC_TYPES.has(errorType) &&
    errorCode === core.getErrorCodeFromHttpStatus(status)
}

function success(exchanges) {
  const last = exchanges.length ? exchanges[exchanges.length - 1].response : null
  return { status: last ? last.status : 200, errorType: null, errorCode: null, message: '', exchanges }
}

function fromMultistatus(entry, exchanges) {
  if (!entry) {
    return { status: 500, errorType: 'MultiStatusError', errorCode: 'UNKNOWN_ERROR', message: 'no result for this event', exchanges }
  }
  const status = typeof entry.status === 'number' ? entry.status : null
  if (!entry.errortype && status !== null && status < 400) {
    return { status, errorType: null, errorCode: null, message: '', exchanges }
  }
  const code = entry.errortype || null
  const errorType = MULTISTATUS_TYPES[code] || 'MultiStatusError'
  return {
    status,
    errorType: statusOnly(errorType, code, status) ? 'HTTPError' : errorType,
    errorCode: code,
    message: String(entry.errormessage || ''),
    exchanges
  }
}

function configurationError(type, message, count) {
  const one = { status: null, errorType: type, errorCode: null, message, exchanges: [] }
  return Array.from({ length: count }, () => one)
}

// --- requests
const running = new Map() // request id -> {stores: [...]} for cancel

async function run(store, id, fn) {
  const entry = running.get(id)
  if (entry) entry.stores.push(store)
  return calls.run(store, fn)
}

async function execute(message) {
  const events = message.events || []
  const destination = destinationFor(message.destination)
  if (!destination) {
    return { results: configurationError('UnknownDestination', `no destination ${message.destination}`, events.length) }
  }
  if (!destination.actions[message.action]) {
    return {
      results: configurationError('UnknownAction', `${message.destination} has no action ${message.action}`, events.length)
    }
  }
  const bundle = { mapping: message.mapping || {}, settings: message.settings || {}, auth: message.auth || undefined }
  if (!message.batch) {
    const results = await Promise.all(
      events.map((event) => {
        const store = { exchanges: [] }
        return run(store, message.id, async () => {
          try {
            await destination.executeAction(message.action, { ...bundle, event })
            return success(store.exchanges)
          } catch (error) {
            return failure(error, store.exchanges)
          }
        })
      })
    )
    return { results }
  }
  // one executeBatch: the exchanges are the batch's, shared by every event's result
  const store = { exchanges: [] }
  return run(store, message.id, async () => {
    try {
      const multistatus = await destination.executeBatch(message.action, { ...bundle, events })
      if (Array.isArray(multistatus) && multistatus.length > 0) {
        return { exchanges: store.exchanges, results: events.map((_, i) => fromMultistatus(multistatus[i], null)) }
      }
      const one = { ...success(store.exchanges), exchanges: null }
      return { exchanges: store.exchanges, results: events.map(() => one) }
    } catch (error) {
      const one = failure(error, null)
      return { exchanges: store.exchanges, results: events.map(() => one) }
    }
  })
}

const HOOKS = {
  validateSettings: (d, m) => d.validateSettings(m.settings),
  testAuthentication: (d, m) => d.testAuthentication(m.settings),
  refreshAccessToken: (d, m) => d.refreshAccessToken(m.settings, m.auth || {}),
  createAudience: (d, m) => d.createAudience({ ...(m.payload || {}), settings: m.settings }),
  getAudience: (d, m) => d.getAudience({ ...(m.payload || {}), settings: m.settings }),
  onDelete: (d, m) => {
    if (!d.onDelete) throw new core.IntegrationError('this destination has no onDelete', 'NotImplemented', 501)
    return d.onDelete(m.payload || {}, m.settings)
  }
}

// actions-core's auth (accessToken …) as Segment's settings.oauth keys it, which is what the
// hooks read it from (getAuthData)
function asOAuthSetting(auth) {
  const oauth = {
    access_token: auth.accessToken,
    refresh_token: auth.refreshToken,
    refresh_token_url: auth.refreshTokenUrl,
    clientId: auth.clientId,
    clientSecret: auth.clientSecret
  }
  return Object.fromEntries(Object.entries(oauth).filter(([, value]) => value !== undefined))
}

async function hook(message) {
  const destination = destinationFor(message.destination)
  const store = { exchanges: [] }
  if (!destination) {
    return { error: configurationError('UnknownDestination', `no destination ${message.destination}`, 1)[0] }
  }
  const fn = HOOKS[message.hook]
  if (!fn) return { error: configurationError('UnknownHook', `no hook ${message.hook}`, 1)[0] }
  let settings = message.settings || {}
  // (refreshAccessToken gets the tokens as its own argument and, as actions-core's
  // handleAuthError calls it, settings without them)
  if (message.auth && message.hook !== 'refreshAccessToken') {
    settings = { ...settings, oauth: { ...(settings.oauth || {}), ...asOAuthSetting(message.auth) } }
  }
  return run(store, message.id, async () => {
    try {
      const result = await fn(destination, { ...message, settings })
      return { result: result === undefined ? null : result, exchanges: store.exchanges }
    } catch (error) {
      return { error: failure(error, store.exchanges) }
    }
  })
}

function ping() {
  const memory = process.memoryUsage()
  return { rss: memory.rss, heapUsed: memory.heapUsed, inFlight: running.size }
}

const retained = [] // test-only: memory held on purpose

function testOp(message) {
  if (message.op === 'spin') {
    const until = Date.now() + message.ms
    while (Date.now() < until) {}
    return {}
  }
  if (message.op === 'allocate') {
    retained.push(Buffer.alloc(message.mb * 1024 * 1024, 1))
    return { rss: process.memoryUsage().rss }
  }
  if (message.op === 'log') {
    console.log(message.text) // as a destination's code would: must reach stderr, not stdout
    return {}
  }
  if (message.op === 'exit') process.exit(message.code || 1)
  return null
}

// --- framing
let pending = []
let flushScheduled = false

function send(answer) {
  const body = Buffer.from(JSON.stringify(answer), 'utf8')
  const head = Buffer.allocUnsafe(4)
  head.writeUInt32BE(body.length, 0)
  pending.push(head, body)
  if (!flushScheduled) {
    flushScheduled = true
    setImmediate(flush)
  }
}

function flush() {
  flushScheduled = false
  const chunk = Buffer.concat(pending)
  pending = []
  frameOut.write(chunk)
}

async function handle(message) {
  const id = message.id
  if (message.op === 'ping') return send({ id, ...ping() })
  if (message.op === 'cancel') {
    // the pool gave up on a call: answer it now with the exchanges made so far
    const entry = running.get(message.target)
    if (!entry) return send({ id, exchanges: null })
    running.delete(message.target)
    return send({ id, exchanges: entry.stores.flatMap((s) => s.exchanges) })
  }
  running.set(id, { stores: [] })
  let answer
  try {
    if (message.op === 'execute') answer = await execute(message)
    else if (message.op === 'hook') answer = await hook(message)
    else if (testOps) answer = testOp(message)
    if (!answer) answer = { error: configurationError('UnknownOp', `no op ${message.op}`, 1)[0] }
  } catch (error) {
    answer = { error: failure(error, []) }
  }
  if (!running.delete(id)) return // cancelled: answered already
  send({ id, ...answer })
}

let buffered = Buffer.alloc(0)
process.stdin.on('data', (chunk) => {
  buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk
  let offset = 0
  while (buffered.length - offset >= 4) {
    const length = buffered.readUInt32BE(offset)
    if (buffered.length - offset - 4 < length) break
    const message = JSON.parse(buffered.toString('utf8', offset + 4, offset + 4 + length))
    offset += 4 + length
    handle(message)
  }
  buffered = buffered.subarray(offset)
})
process.stdin.on('end', () => {
  // the pool closed our input: finish what is in flight, then leave
  const wait = () => (running.size ? setTimeout(wait, 20) : process.exit(0))
  wait()
})
process.on('unhandledRejection', (reason) => console.error('unhandled rejection:', reason))
send({ id: 0, ready: true, pid: process.pid })
