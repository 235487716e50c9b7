'use strict'
// The oracle for Headwater's actions runtime: Segment's package called directly, nothing of
// Headwater in between. Reads JSON on stdin and prints JSON on stdout:
//   {"cases": [{directory, action, settings, mapping, subscribe, events, batch, auth, env,
//               answer}]}
//     -> {"results": [{requests: [{method, url, headers, body}], subscribed, result?, error?}]}
//     The events matching `subscribe` (Segment's FQL, evaluated by Segment's own
//     destination-subscriptions, as its onSubscription does) go to
//     `new Destination(definition).executeAction` one at a time (or `executeBatch` together);
//     `env` is set in the process environment meanwhile (partner credentials some definitions
//     read from it);
//     every HTTP request the destination's code makes goes through actions-core's `cross-fetch`,
//     which is swapped for a recorder that answers `answer` ({status, body, headers}; default
//     200 with a JSON body) without touching the network.
//   {"refresh": {directory, settings, auth, answer}}
//     -> {requests, result?, error?}: the definition's refreshAccessToken as actions-core runs it
//     after a 401 (`Destination.refreshAccessToken(settings without oauth, oauth data)`).
//   {"describe": [directory, ...]}
//     -> {"destinations": {directory: {name, scheme, secrets, presets, actions: {key:
//        {defaultSubscription, defaults, batches}}}}}: what a case's mapping may be taken from,
//        and which settings are secrets (type password).
// The package comes from $HEADWATER_ACTIONS_DIR (its node_modules), as published.

const path = require('path')
const { createRequire } = require('module')

const actionsDir = process.env.HEADWATER_ACTIONS_DIR
if (!actionsDir) {
  process.stderr.write('HEADWATER_ACTIONS_DIR is not set\n')
  process.exit(2)
}
const requireHere = createRequire(path.join(actionsDir, 'package.json'))
// The actions-core the destinations use, and the cross-fetch that one captures at load.
const destinationsEntry = requireHere.resolve('@segment/action-destinations')
const corePath = createRequire(destinationsEntry).resolve('@segment/actions-core')
const crossFetchPath = createRequire(corePath).resolve('cross-fetch')
const realFetch = require(crossFetchPath)

let recorded = []
let answer = {}

async function recorder(input, init) {
  const request = new realFetch.Request(input, init)
  const headers = {}
  request.headers.forEach((value, name) => {
    headers[name] = value
  })
  const body = request.body === null ? null : await request.text()
  recorded.push({ method: request.method, url: request.url, headers, body })
  const status = answer.status ?? 200
  const plain = typeof answer.body === 'string'
  const text = answer.body === undefined ? '{"ok":true}' : plain ? answer.body : JSON.stringify(answer.body)
  return new realFetch.Response(text, {
    status,
    statusText: status < 300 ? 'OK' : 'Error',
    headers: answer.headers ?? { 'content-type': plain ? 'text/plain' : 'application/json' },
    url: request.url
  })
}
Object.assign(recorder, realFetch)
recorder.default = recorder
recorder.fetch = recorder
require(crossFetchPath)
require.cache[crossFetchPath].exports = recorder

const actionDestinations = requireHere('@segment/action-destinations')
const { Destination, defaultValues } = require(corePath)
const subscriptions = createRequire(corePath)('@segment/destination-subscriptions')

const definitions = new Map()
for (const entry of Object.values(actionDestinations.manifest)) {
  definitions.set(entry.directory, entry.definition)
}

function definitionOf(directory) {
  const definition = definitions.get(directory)
  if (!definition) throw new Error(`no destination ${directory} in the package's manifest`)
  return definition
}

function describeError(error) {
  return {
    name: error?.name ?? typeof error,
    message: String(error?.message ?? error),
    status: error?.status ?? error?.response?.status ?? null,
    code: error?.code ?? null
  }
}

// What executeAction / executeBatch returned, as JSON: outputs and multistatus entries (a
// response object may hold cycles).
function plain(value) {
  const seen = new WeakSet()
  return JSON.parse(
    JSON.stringify(value, (key, item) => {
      if (typeof item === 'object' && item !== null) {
        if (seen.has(item)) return undefined
        seen.add(item)
      }
      return item
    }) ?? 'null'
  )
}

async function run(spec) {
  const destination = new Destination(definitionOf(spec.directory))
  recorded = []
  answer = spec.answer ?? {}
  const input = { mapping: spec.mapping, settings: spec.settings ?? {}, auth: spec.auth }
  let events = spec.events
  const out = {}
  if (spec.subscribe) {
    const parsed = subscriptions.parseFql(spec.subscribe)
    if (parsed.error) throw new Error(`invalid subscribe ${spec.subscribe}: ${parsed.error.message}`)
    events = events.filter((event) => subscriptions.validate(parsed, event))
  }
  out.subscribed = events.map((event) => event.messageId ?? null)
  const saved = {}
  for (const [name, value] of Object.entries(spec.env ?? {})) {
    saved[name] = process.env[name]
    process.env[name] = value
  }
  try {
    if (events.length === 0) {
      out.result = []
    } else if (spec.batch) {
      out.result = plain(await destination.executeBatch(spec.action, { ...input, events }))
    } else {
      const results = []
      for (const event of events) {
        results.push(plain(await destination.executeAction(spec.action, { ...input, event })))
      }
      out.result = results
    }
  } catch (error) {
    out.error = describeError(error)
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
  }
  out.requests = recorded
  return out
}

async function refresh(spec) {
  const destination = new Destination(definitionOf(spec.directory))
  recorded = []
  answer = spec.answer ?? {}
  const out = {}
  try {
    out.result = plain(await destination.refreshAccessToken(spec.settings ?? {}, spec.auth ?? {}))
  } catch (error) {
    out.error = describeError(error)
  }
  out.requests = recorded
  return out
}

function describe(directory) {
  const definition = definitionOf(directory)
  const actions = {}
  for (const [key, action] of Object.entries(definition.actions)) {
    actions[key] = {
      defaultSubscription: action.defaultSubscription ?? null,
      defaults: defaultValues(action.fields),
      batches: typeof action.performBatch === 'function'
    }
  }
  return {
    name: definition.name,
    scheme: definition.authentication?.scheme ?? null,
    secrets: Object.entries(definition.authentication?.fields ?? {})
      .filter(([, field]) => field.type === 'password')
      .map(([key]) => key),
    presets: (definition.presets ?? []).map((preset) => ({
      name: preset.name,
      type: preset.type,
      action: preset.partnerAction,
      subscribe: preset.subscribe ?? null,
      mapping: preset.mapping ?? {}
    })),
    actions
  }
}

async function main() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  const request = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  let reply
  if (request.refresh) {
    reply = await refresh(request.refresh)
  } else if (request.describe) {
    reply = { destinations: Object.fromEntries(request.describe.map((d) => [d, describe(d)])) }
  } else {
    const results = []
    for (const spec of request.cases) results.push(await run(spec))
    reply = { results }
  }
  process.stdout.write(JSON.stringify(reply))
}

main().catch((error) => {
  process.stderr.write(String(error?.stack ?? error) + '\n')
  process.exit(1)
})
