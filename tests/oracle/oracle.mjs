// Test oracle: Segment's MIT-licensed npm packages, run as ONE long-lived Node process that
// answers many differential-test cases. Headwater's own Python implementations are written
// independently; these packages only tell the tests what the right answer is.
//
// Protocol (newline-delimited JSON, UTF-8):
//
//   stdin   one request per line:   {"op": "<name>", "cases": [<case>, ...]}
//   stdout  one response per line, in request order:
//             {"results": [<result>, ...]}      one result per case, in case order
//           or, when the request itself is unusable (not JSON, no such op, `cases` not an array):
//             {"error": "<message>"}
//   result  {"value": <answer>}                 the library's answer
//           {"undefined": true}                 the library answered `undefined`
//           {"error": "<message>"}              the library threw (or returned an error) for this
//                                               case; the other cases are unaffected
//
// Each case is deep-copied before it is handed to a library, so nothing a library mutates can
// leak into another case. Answers go through JSON.stringify, so in nested values `undefined`
// object members disappear, `undefined` array items and NaN/±Infinity become null; only a
// top-level `undefined` answer is kept, as {"undefined": true}. An answer JSON cannot carry
// (a BigInt, a cycle) becomes that case's error. When a library throws an AggregateError (the
// mapping kit's validator collects several problems that way), the error is the inner errors'
// messages, one per line, in the library's order; otherwise it is the thrown error's message.
//
// Ops and their cases:
//   ping                    {}                                  -> "pong"
//   versions                {}                                  -> {"<package>": "<version>", ...}
//   tsub.matches            {"event": {...}, "matcher": {...}}  -> boolean
//                           matcher is {"type": "all"} or {"type": "fql", "ir": "<IR as a JSON string>"}
//   tsub.transform          {"event": {...}, "transformers": [...]}  -> the event, or null when dropped
//   subscriptions.parse     {"trigger": "<FQL trigger>"}        -> the parsed condition
//                           (a parse failure is the case's error)
//   subscriptions.validate  {"trigger": "...", "event": {...}}  -> boolean (parse, then validate)
//   mapping.transform       {"mapping": {...}, "payload": {...}}  -> the mapped object
//   mapping.validate        {"mapping": {...}}                  -> true, or the validation error
//
// Anything a library prints is sent to stderr, so stdout carries only protocol lines.

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'

const require = createRequire(import.meta.url)

for (const name of ['log', 'info', 'warn', 'debug', 'trace']) {
  console[name] = (...args) => console.error(...args)
}

const tsub = require('@segment/tsub')
const subscriptions = require('@segment/destination-subscriptions')
const mappingKit = require('@segment/actions-core/mapping-kit')
const validateMapping = require('@segment/actions-core/mapping-kit/validate').default

const PACKAGES = ['@segment/tsub', '@segment/destination-subscriptions', '@segment/actions-core', 'liquidjs']

function installedVersion(name) {
  const manifest = new URL(`./node_modules/${name}/package.json`, import.meta.url)
  return JSON.parse(readFileSync(manifest, 'utf8')).version
}

function parseTrigger(trigger) {
  const parsed = subscriptions.parseFql(trigger)
  if (parsed && parsed.error) {
    throw parsed.error
  }
  return parsed
}

const OPS = {
  ping: () => 'pong',
  versions: () => Object.fromEntries(PACKAGES.map((name) => [name, installedVersion(name)])),
  'tsub.matches': (c) => tsub.matches(c.event, c.matcher),
  'tsub.transform': (c) => tsub.transform(c.event, c.transformers),
  'subscriptions.parse': (c) => parseTrigger(c.trigger),
  'subscriptions.validate': (c) => subscriptions.validate(parseTrigger(c.trigger), c.event),
  'mapping.transform': (c) => mappingKit.transform(c.mapping, c.payload),
  'mapping.validate': (c) => {
    validateMapping(c.mapping)
    return true
  }
}

function errorMessage(error) {
  if (error instanceof Error) {
    const inner = Array.isArray(error.errors)
      ? error.errors
      : error.name === 'AggregateError' && typeof error[Symbol.iterator] === 'function'
        ? [...error]
        : null
    if (inner && inner.length > 0) {
      return inner.map(errorMessage).join('\n')
    }
    return error.message
  }
  return String(error)
}

function runCase(fn, testCase) {
  try {
    const value = fn(structuredClone(testCase))
    if (value === undefined) {
      return '{"undefined":true}'
    }
    return `{"value":${JSON.stringify(value)}}`
  } catch (error) {
    let message
    try {
      message = errorMessage(error)
    } catch (inner) {
      message = `unprintable error: ${String(inner)}`
    }
    return JSON.stringify({ error: message })
  }
}

function answer(line) {
  let request
  try {
    request = JSON.parse(line)
  } catch (error) {
    return JSON.stringify({ error: `request is not JSON: ${error.message}` })
  }
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    return JSON.stringify({ error: 'request must be a JSON object' })
  }
  const fn = Object.hasOwn(OPS, request.op) ? OPS[request.op] : undefined
  if (fn === undefined) {
    return JSON.stringify({ error: `unknown op ${JSON.stringify(request.op)}; known: ${Object.keys(OPS).join(', ')}` })
  }
  if (!Array.isArray(request.cases)) {
    return JSON.stringify({ error: '"cases" must be an array' })
  }
  return `{"results":[${request.cases.map((c) => runCase(fn, c)).join(',')}]}`
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', (line) => {
  if (line.trim() === '') {
    return
  }
  let response
  try {
    response = answer(line)
  } catch (error) {
    response = JSON.stringify({ error: `oracle failure: ${String(error)}` })
  }
  process.stdout.write(response + '\n')
})
lines.on('close', () => {
  process.exitCode = 0
})
