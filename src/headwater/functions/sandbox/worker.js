// The JavaScript sandbox worker: runs one saved version of one function (a `Code.key`).
//
// It speaks the sandbox protocol (docs/functions.md) over stdin/stdout, one JSON object per
// line. The user's code is evaluated unmodified in a `vm` context whose globals are Segment's
// runtime surface (§11.1); everything the code may touch outside itself goes through the host:
// `fetch` is a message to the host, the deadline and the memory cap are the host's to enforce.
// The vm context is not the security boundary (Node says so); the process is: Node's permission
// model, a clean environment, the host's rlimits/seccomp/bubblewrap (policy.py) and this file's
// hardening below hold even when code reaches the host realm.
'use strict'

const vm = require('node:vm')
const util = require('node:util')
const nodeCrypto = require('node:crypto')
const { AsyncLocalStorage } = require('node:async_hooks')
const { Buffer } = require('node:buffer')
const path = require('node:path')
const fs = require('node:fs')

const ERROR_CLASSES = ['EventNotSupported', 'InvalidEventPayload', 'ValidationError', 'RetryError', 'DropEvent']
const MAX_LOG_LINES = 500
const MAX_LOG_LINE = 4096
const MAX_ANSWER = 16 * 1024 * 1024 // characters of one answer's line
const LIBRARIES = process.argv[2] || '' // node_modules of the pre-installed libraries; '' for none

const als = new AsyncLocalStorage()
const calls = new Map() // invocation id -> its state (logs, emitted, cache)
const fetches = new Map() // fetch id -> callback(answer)
let nextFetch = 1
let sharedCache = new Map()

// ---- hardening of the host realm: no sockets, no native bindings, even after an escape ----
function refuse (what) {
  return function () { throw new Error(`${what} is not available in a function`) }
}
for (const name of ['net', 'tls', 'dgram', 'http', 'https', 'http2']) {
  const mod = require(`node:${name}`)
  for (const fn of ['connect', 'createConnection', 'createSocket', 'request', 'get', 'createServer']) {
    if (typeof mod[fn] === 'function') mod[fn] = refuse(`${name}.${fn}`)
  }
  if (mod.Socket) mod.Socket.prototype.connect = refuse(`${name}.Socket.connect`)
  if (mod.Server) mod.Server.prototype.listen = refuse(`${name}.Server.listen`)
}
for (const name of ['binding', '_linkedBinding', 'dlopen']) {
  try { process[name] = refuse(`process.${name}`) } catch {}
}

// ---- output: answers of one turn of the event loop go out in one write ----
let outbox = []
function send (message) {
  if (outbox.length === 0) setImmediate(flush)
  outbox.push(JSON.stringify(message))
}
function flush () {
  const text = outbox.join('\n') + '\n'
  outbox = []
  process.stdout.write(text)
}

// ---- the host side of the globals (kept out of the user's reach in the prelude's closure) ----
function current () {
  return als.getStore()
}
function own (timer) {
  const call = current()
  if (call !== undefined) {
    if (call.timers === undefined) call.timers = new Set()
    call.timers.add(timer)
  }
  return timer
}
function stopTimers (call) {
  if (call.timers !== undefined) for (const timer of call.timers) clearTimeout(timer)
}

const bridge = {
  log (level, args) {
    const call = current()
    if (call === undefined) {
      process.stderr.write(`console.${level} outside an invocation: ${util.format(...args)}\n`.slice(0, MAX_LOG_LINE))
      return
    }
    if (call.logs.length >= MAX_LOG_LINES) return
    let text
    try { text = util.format(...args) } catch (error) { text = `<unprintable: ${error}>` }
    call.logs.push([level, text.length > MAX_LOG_LINE ? text.slice(0, MAX_LOG_LINE) + '…' : text])
  },
  emit (type, json) {
    const call = current()
    if (call === undefined) throw new Error(`Segment.${type} outside an invocation`)
    call.emitted.push({ type, ...JSON.parse(json) })
  },
  callId () {
    const call = current()
    return call === undefined ? null : call.id
  },
  active (id) { return id === null || calls.has(id) },
  cache () {
    const call = current()
    return call !== undefined && call.cache !== undefined ? call.cache : sharedCache
  },
  fetch (json, callback) {
    const call = current()
    if (call === undefined) {
      callback(JSON.stringify({ error: 'fetch outside an invocation' }))
      return
    }
    const id = nextFetch++
    fetches.set(id, callback)
    send({ ...JSON.parse(json), op: 'fetch', id, call: call.id })
  },
  base64ToBytes (text) { return Buffer.from(text, 'base64') },
  Response, // Node's own: encodes a FormData body
  library (name) { return libraryGlobal(name) },
  nodeVersion: process.version,
  URL,
  URLSearchParams,
  Buffer,
  TextEncoder,
  TextDecoder,
  FormData,
  Blob,
  AbortController,
  AbortSignal,
  // a call's timers end with it (like a Lambda frozen after its answer): none fires later
  setTimeout: (fn, ms, ...args) => own(setTimeout(fn, ms, ...args)),
  clearTimeout,
  setInterval: (fn, ms, ...args) => own(setInterval(fn, ms, ...args)),
  clearInterval,
  setImmediate,
  clearImmediate,
  queueMicrotask,
  structuredClone,
  atob,
  btoa,
  crypto: nodeCrypto,
  webcrypto: globalThis.crypto,
  performance: globalThis.performance
}

// global name -> how to make it from the installed packages (libraries/package.json)
const LIBRARY_GLOBALS = {
  _: (r) => r('lodash'),
  moment: (r) => r('moment-timezone'),
  uuidv5: (r) => { const v5 = r('uuid').v5; v5.uuidv5 = v5; return v5 },
  jsonwebtoken: (r) => r('jsonwebtoken'),
  xml: (r) => r('xml'),
  xml2js: (r) => r('xml2js'),
  libphonenumberjslib: (r) => ({ libphonenumberjs: r('libphonenumber-js') }),
  fetchretrylib: (r) => ({ fetchretry: r('fetch-retry') }),
  zlib: (r) => Object.assign({ zlib: r('zlib') }, r('zlib'))
}
// ---- the runtime surface evaluated inside the context: its objects belong to the context ----
const PRELUDE = String.raw`(function (bridge) {
'use strict'
const g = globalThis
const define = (name, value) => Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false })

for (const name of ['URL', 'URLSearchParams', 'Buffer', 'TextEncoder', 'TextDecoder', 'FormData', 'Blob',
  'AbortController', 'AbortSignal', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval',
  'setImmediate', 'clearImmediate', 'queueMicrotask', 'structuredClone', 'atob', 'btoa', 'performance']) {
  define(name, bridge[name])
}
define('crypto', bridge.webcrypto)

function errorClass (name) {
  const cls = { [name]: class extends Error {
    constructor (message) {
      super(message)
      this.name = name
    }
  } }[name]
  return cls
}
const errors = {}
for (const name of ${JSON.stringify(ERROR_CLASSES)}) {
  errors[name] = errorClass(name)
  define(name, errors[name])
}

const console = {}
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  console[level] = (...args) => bridge.log(level, args)
}
console.trace = console.debug
define('console', console)

const Segment = {}
for (const type of ['identify', 'track', 'group', 'page', 'screen', 'alias', 'set']) {
  Segment[type] = (payload) => {
    if (payload === null || typeof payload !== 'object') {
      throw new TypeError('Segment.' + type + ' takes an object')
    }
    bridge.emit(type, JSON.stringify(payload))
  }
}
define('Segment', Object.freeze(Segment))

// cache.load(key, ttlMs, async fn): fn runs on a miss or after ttlMs; ttl omitted or -1: forever
const cache = Object.freeze({
  load (key, ttl, fn) {
    if (typeof ttl === 'function' && fn === undefined) { fn = ttl; ttl = -1 }
    if (typeof fn !== 'function') return Promise.reject(new TypeError('cache.load(key, ttl, fn): fn must be a function'))
    const store = bridge.cache()
    const now = Date.now()
    const found = store.get(key)
    // a value still being made by a call that was cut off (its deadline) is made again
    const orphan = found !== undefined && !found.settled && !bridge.active(found.owner)
    if (found !== undefined && !orphan && (found.expires === null || found.expires > now)) return found.value
    const forever = ttl === undefined || ttl === null || ttl === -1 || ttl < 0
    const value = Promise.resolve().then(() => fn())
    const entry = { value, expires: forever ? null : now + Number(ttl), settled: false, owner: bridge.callId() }
    store.set(key, entry)
    value.then(() => { entry.settled = true }, () => { if (store.get(key) === entry) store.delete(key) })
    return value
  },
  delete (key) {
    bridge.cache().delete(key)
  }
})
define('cache', cache)

// ---- fetch: node-fetch v2's surface, the request made by the host ----
class Headers {
  #map = new Map()
  constructor (init) {
    if (init === undefined || init === null) return
    if (init instanceof Headers || (typeof init === 'object' && typeof init[Symbol.iterator] === 'function')) {
      for (const pair of init) this.append(pair[0], pair[1])
    } else if (typeof init === 'object') {
      for (const name of Object.keys(init)) {
        const value = init[name]
        if (Array.isArray(value)) for (const one of value) this.append(name, one)
        else this.append(name, value)
      }
    } else {
      throw new TypeError('Provided initializer must be an object')
    }
  }
  append (name, value) {
    const key = String(name).toLowerCase()
    const list = this.#map.get(key)
    if (list) list.push(String(value))
    else this.#map.set(key, [String(value)])
  }
  set (name, value) { this.#map.set(String(name).toLowerCase(), [String(value)]) }
  get (name) {
    const list = this.#map.get(String(name).toLowerCase())
    return list === undefined ? null : list.join(', ')
  }
  has (name) { return this.#map.has(String(name).toLowerCase()) }
  delete (name) { this.#map.delete(String(name).toLowerCase()) }
  raw () {
    const raw = {}
    for (const [key, list] of this.#map) raw[key] = [...list]
    return raw
  }
  forEach (fn, self) { for (const [key, value] of this.entries()) fn.call(self, value, key, this) }
  * entries () { for (const key of [...this.#map.keys()].sort()) yield [key, this.get(key)] }
  * keys () { for (const [key] of this.entries()) yield key }
  * values () { for (const [, value] of this.entries()) yield value }
  [Symbol.iterator] () { return this.entries() }
  get [Symbol.toStringTag] () { return 'Headers' }
  pairs () {
    const pairs = []
    for (const [key, list] of this.#map) for (const value of list) pairs.push([key, value])
    return pairs
  }
}
define('Headers', Headers)

class FetchError extends Error {
  constructor (message, type, code) {
    super(message)
    this.name = 'FetchError'
    this.type = type
    if (code !== undefined) { this.code = code; this.errno = code }
  }
}

function bodyBytes (body, headers) {
  if (body === undefined || body === null) return null
  if (typeof body === 'string') return g.Buffer.from(body, 'utf8')
  if (body instanceof g.URLSearchParams) {
    if (!headers.has('content-type')) headers.set('content-type', 'application/x-www-form-urlencoded;charset=UTF-8')
    return g.Buffer.from(body.toString(), 'utf8')
  }
  if (g.Buffer.isBuffer(body)) return body
  if (ArrayBuffer.isView(body)) return g.Buffer.from(body.buffer, body.byteOffset, body.byteLength)
  if (body instanceof ArrayBuffer) return g.Buffer.from(body)
  return g.Buffer.from(String(body), 'utf8')
}

class Body {
  #bytes
  #used = false
  constructor (bytes) { this.#bytes = bytes === null ? g.Buffer.alloc(0) : bytes }
  get bodyUsed () { return this.#used }
  get body () { return this.#bytes }
  #take () {
    if (this.#used) return Promise.reject(new TypeError('body used already for: ' + this.url))
    this.#used = true
    return Promise.resolve(this.#bytes)
  }
  buffer () { return this.#take() }
  arrayBuffer () { return this.#take().then((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)) }
  text () { return this.#take().then((b) => b.toString('utf8')) }
  json () {
    return this.#take().then((b) => {
      const text = b.toString('utf8')
      try { return JSON.parse(text) } catch (error) {
        throw new FetchError('invalid json response body at ' + this.url + ' reason: ' + error.message, 'invalid-json')
      }
    })
  }
  _bytes () { return this.#bytes }
}

class Response extends Body {
  constructor (body = null, init = {}) {
    const headers = new Headers(init.headers)
    super(bodyBytes(body, headers))
    this.headers = headers
    this.status = init.status === undefined ? 200 : init.status
    this.statusText = init.statusText === undefined ? '' : String(init.statusText)
    this.url = init.url === undefined ? '' : String(init.url)
    this.redirected = Boolean(init.redirected)
  }
  get ok () { return this.status >= 200 && this.status < 300 }
  clone () {
    if (this.bodyUsed) throw new Error('cannot clone body after it is used')
    return new Response(this._bytes(), this)
  }
}
define('Response', Response)

class Request extends Body {
  constructor (input, init = {}) {
    const source = input instanceof Request ? input : null
    const headers = new Headers(init.headers !== undefined ? init.headers : source ? source.headers : undefined)
    const body = init.body !== undefined ? init.body : source ? source._bytes() : null
    super(bodyBytes(body, headers))
    this.url = source ? source.url : String(input)
    this.method = String(init.method || (source ? source.method : 'GET')).toUpperCase()
    this.headers = headers
    this.redirect = init.redirect || (source ? source.redirect : 'follow')
  }
  clone () { return new Request(this) }
}
define('Request', Request)

async function fetch (input, init = {}) {
  if (init !== null && typeof init === 'object' && init.body instanceof g.FormData) {
    // multipart/form-data with its boundary, encoded the way Node's own fetch does
    const encoded = new bridge.Response(init.body)
    const headers = new Headers(init.headers)
    headers.set('content-type', encoded.headers.get('content-type'))
    init = { ...init, headers, body: g.Buffer.from(await encoded.arrayBuffer()) }
  }
  const request = new Request(input, init)
  if (!/^https?:\/\//i.test(request.url)) throw new TypeError('Only absolute URLs are supported')
  if (!['follow', 'manual', 'error'].includes(request.redirect)) {
    throw new TypeError('Redirect option ' + request.redirect + ' is not a valid value of RequestRedirect')
  }
  const bytes = request._bytes()
  const answer = await new Promise((resolve) => bridge.fetch(JSON.stringify({
    url: request.url,
    method: request.method,
    headers: request.headers.pairs(),
    body_base64: bytes.length || (request.method !== 'GET' && request.method !== 'HEAD') ? bytes.toString('base64') : null,
    redirect: request.redirect
  }), resolve))
  const a = JSON.parse(answer)
  if (a.error !== undefined) {
    throw new FetchError('request to ' + request.url + ' failed, reason: ' + a.error, 'system', a.code)
  }
  return new Response(bridge.base64ToBytes(a.body_base64 || ''), {
    status: a.status, statusText: a.statusText, headers: a.headers, url: a.url, redirected: a.url !== request.url
  })
}
fetch.isRedirect = (code) => [301, 302, 303, 307, 308].includes(code)
define('fetch', fetch)
define('FetchError', FetchError)

// the pre-installed libraries (§11.1), loaded on first touch: a function using none pays nothing
for (const name of ${JSON.stringify(Object.keys(LIBRARY_GLOBALS))}) {
  Object.defineProperty(g, name, {
    configurable: true,
    enumerable: false,
    get () {
      const value = bridge.library(name)
      define(name, value)
      return value
    },
    set (value) { define(name, value) }
  })
}

// require: only the Node modules Segment's runtime offers (crypto; https is refused: no sockets)
define('require', function require (name) {
  const bare = String(name).replace(/^node:/, '')
  if (bare === 'crypto') return bridge.crypto
  if (bare === 'buffer') return { Buffer: g.Buffer }
  if (bare === 'url') return { URL: g.URL, URLSearchParams: g.URLSearchParams }
  if (bare === 'https' || bare === 'http') {
    throw new Error("require('" + name + "'): functions make HTTP requests with fetch(); the sandbox has no sockets")
  }
  throw new Error("Cannot find module '" + name + "': functions cannot import modules")
})

// the onRequest argument: request.json(), request.text(), request.headers.get(), request.url (a URL)
function incoming (payload) {
  const bytes = bridge.base64ToBytes(payload.body_base64 || '')
  const text = bytes.toString('utf8')
  return {
    method: payload.method,
    url: new g.URL(payload.url),
    headers: new Headers(payload.headers),
    body: bytes,
    text: () => Promise.resolve(text),
    json: () => Promise.resolve().then(() => JSON.parse(text)),
    buffer: () => Promise.resolve(bytes)
  }
}

// what libraries (not the function: it has no process) see of Node's process
const libraryProcess = Object.freeze({
  env: Object.freeze({}),
  version: bridge.nodeVersion,
  versions: Object.freeze({ node: bridge.nodeVersion.slice(1) }),
  platform: 'linux',
  browser: false,
  argv: Object.freeze([]),
  cwd: () => '/',
  emitWarning: () => undefined,
  nextTick: (fn, ...args) => queueMicrotask(() => fn(...args)),
  hrtime: Object.assign(() => [0, 0], { bigint: () => 0n })
})

return { errors, incoming, parse: JSON.parse, newModule: () => ({ exports: {} }), libraryProcess }
})`

// ---- loading and invoking ----
let loaded = null // { context, surface, handlers } once the code is in
let loadError = null

function load (message) {
  const context = vm.createContext({}, { name: `function ${message.key}`, codeGeneration: { strings: true, wasm: false } })
  const surface = vm.runInContext(PRELUDE, context, { filename: 'headwater:functions-runtime.js' })(bridge)
  moduleCache = new Map()
  loaded = { context, surface, handlers: new Map() }
  try {
    new vm.Script(message.code, { filename: 'function.js' }).runInContext(context)
  } catch (error) {
    loadError = `${error && error.name ? error.name : 'Error'}: ${error && error.message !== undefined ? error.message : String(error)}`
    loaded = null
    send({ op: 'loaded', key: message.key, error: 'LoadError', message: loadError })
    return
  }
  send({ op: 'loaded', key: message.key })
}

// ---- the pre-installed libraries: CommonJS modules evaluated inside the function's context ----
// Node's modules a library may require: the host's (the process is the boundary, not the vm)
const NODE_MODULES = new Set(['assert', 'buffer', 'crypto', 'events', 'stream', 'string_decoder',
  'timers', 'url', 'querystring', 'util', 'zlib', 'path'])
let moduleCache = null

function libraryGlobal (name) {
  const make = LIBRARY_GLOBALS[name]
  if (!LIBRARIES) throw new Error(`${name} is not installed here (the functions' libraries are not installed)`)
  return make((request) => requireFrom(path.join(LIBRARIES, 'node_modules'), request))
}

function resolveFile (candidate) {
  for (const file of [candidate, `${candidate}.js`, `${candidate}.json`]) {
    try { if (fs.statSync(file).isFile()) return file } catch {}
  }
  try {
    const manifest = JSON.parse(fs.readFileSync(path.join(candidate, 'package.json'), 'utf8'))
    if (manifest.main) return resolveFile(path.join(candidate, manifest.main))
  } catch {}
  const index = path.join(candidate, 'index.js')
  try { if (fs.statSync(index).isFile()) return index } catch {}
  return null
}

function requireFrom (directory, request) {
  const bare = request.replace(/^node:/, '')
  if (NODE_MODULES.has(bare)) return require(`node:${bare}`)
  let file = null
  if (request.startsWith('./') || request.startsWith('../') || request.startsWith('/')) {
    file = resolveFile(path.resolve(directory, request))
  } else {
    const root = path.join(LIBRARIES, 'node_modules')
    for (let dir = directory; dir.startsWith(root) && file === null; dir = path.dirname(dir)) {
      const base = path.basename(dir) === 'node_modules' ? dir : path.join(dir, 'node_modules')
      file = resolveFile(path.join(base, request))
      if (dir === root) break
    }
  }
  if (file === null) throw new Error(`Cannot find module '${request}' (a library's dependency)`)
  return loadModule(file)
}

function loadModule (file) {
  const cached = moduleCache.get(file)
  if (cached !== undefined) return cached.exports
  const { context, surface } = loaded
  if (file.endsWith('.json')) {
    const value = surface.parse(fs.readFileSync(file, 'utf8'))
    moduleCache.set(file, { exports: value })
    return value
  }
  const module = surface.newModule()
  moduleCache.set(file, module)
  const wrapper = vm.runInContext(
    `(function (exports, require, module, __filename, __dirname, process, global) {${fs.readFileSync(file, 'utf8')}\n})`,
    context, { filename: file })
  const directory = path.dirname(file)
  wrapper.call(module.exports, module.exports, (request) => requireFrom(directory, request), module, file,
    directory, surface.libraryProcess, context)
  return module.exports
}

function handlerOf (name) {
  let found = loaded.handlers.get(name)
  if (found === undefined) {
    // a function declaration or a top-level const/let: both are visible to a later script
    found = vm.runInContext(`typeof ${name} === 'function' ? ${name} : null`, loaded.context)
    loaded.handlers.set(name, found)
  }
  return found
}

function classify (error) {
  if (error !== null && typeof error === 'object') {
    for (const name of ERROR_CLASSES) {
      if (error instanceof loaded.surface.errors[name]) return name
    }
    if (error.name === 'RangeError' && /allocation failed/i.test(String(error.message))) return 'MemoryLimit'
  }
  return 'Error'
}

function messageOf (error) {
  if (error !== null && typeof error === 'object' && 'message' in error) {
    try { return String(error.message) } catch { return '' }
  }
  try { return String(error) } catch { return '' }
}

function finish (call, answer) {
  stopTimers(call)
  if (!calls.delete(call.id)) return // cancelled
  answer.logs = call.logs
  answer.emitted = call.emitted
  let line
  try {
    line = JSON.stringify(answer)
    if (line.length > MAX_ANSWER) throw new Error(`it is over ${MAX_ANSWER} characters`)
  } catch (error) {
    line = JSON.stringify({ op: 'done', id: call.id, error: 'Error', message: `the handler's answer cannot be sent: ${error.message}`, logs: call.logs.slice(0, 20), emitted: [] })
  }
  if (outbox.length === 0) setImmediate(flush)
  outbox.push(line)
  if (closing && calls.size === 0) exitSoon()
}

function invoke (message) {
  const call = { id: message.id, logs: [], emitted: [], cache: message.fresh_cache ? new Map() : undefined }
  calls.set(call.id, call)
  if (loaded === null) {
    finish(call, { op: 'done', id: call.id, error: 'LoadError', message: loadError || 'the function is not loaded' })
    return
  }
  const handler = handlerOf(message.handler)
  if (handler === null) {
    finish(call, { op: 'done', id: call.id, error: 'EventNotSupported', message: `${message.handler} is not implemented` })
    return
  }
  als.run(call, () => {
    let result
    try {
      const argument = message.handler === 'onRequest' ? loaded.surface.incoming(message.payload) : message.payload
      result = Promise.resolve(handler(argument, message.settings || {}))
    } catch (error) {
      result = Promise.reject(error)
    }
    result.then(
      (value) => finish(call, { op: 'done', id: call.id, value: value === undefined ? null : value }),
      (error) => finish(call, { op: 'done', id: call.id, error: classify(error), message: messageOf(error) })
    )
  })
}

function handle (line) {
  // once loaded, parse in the context: the event's objects and arrays are the code's own
  const message = loaded !== null ? loaded.surface.parse(line) : JSON.parse(line)
  switch (message.op) {
    case 'load': load(message); break
    case 'invoke': invoke(message); break
    case 'fetched': {
      const callback = fetches.get(message.id)
      if (callback !== undefined) {
        fetches.delete(message.id)
        const { op, id, ...answer } = message
        callback(JSON.stringify(answer))
      }
      break
    }
    case 'ping': send({ op: 'pong' }); break
    case 'cancel': { // past its deadline: its answer is not awaited any more
      const call = calls.get(message.id)
      if (call !== undefined) stopTimers(call)
      calls.delete(message.id)
      if (closing && calls.size === 0) exitSoon()
      break
    }
    default: process.stderr.write(`unknown op ${message.op}\n`)
  }
}

let closing = false
function exitSoon () {
  flush()
  process.stdout.end(() => process.exit(0))
}

// A promise nobody awaits that rejects, a throw in a timer's callback: the function's bug, not a
// reason to end the process under its other calls. Logged (stderr: the host's log).
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`unhandled rejection in the function: ${messageOf(reason)}\n`.slice(0, MAX_LOG_LINE))
})
process.on('uncaughtException', (error) => {
  process.stderr.write(`uncaught exception in the function: ${messageOf(error)}\n`.slice(0, MAX_LOG_LINE))
})

let buffered = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk) => {
  buffered += chunk
  let start = 0
  let end
  while ((end = buffered.indexOf('\n', start)) !== -1) {
    const line = buffered.slice(start, end)
    start = end + 1
    if (line.length === 0) continue
    try {
      handle(line)
    } catch (error) {
      process.stderr.write(`bad message: ${error && error.stack}\n`)
    }
  }
  buffered = buffered.slice(start)
})
process.stdin.on('end', () => {
  closing = true
  if (calls.size === 0) exitSoon()
})
