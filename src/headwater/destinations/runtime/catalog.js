'use strict'
// The metadata of every definition of @segment/action-destinations, as one JSON document.
//
// Run with a Node.js fit for the package, from (or naming) the directory it is installed in:
//   node catalog.js <installed dir> <output file>
// Python reads the result (catalog.json) to build the catalog without starting Node, so only
// data goes in: settings, actions and their fields, presets, and the names of the hooks a
// definition has (never their code).

const fs = require('fs')
const path = require('path')

const FIELD_KEYS = [
  'label',
  'description',
  'type',
  'required',
  'multiple',
  'default',
  'choices',
  'allowNull',
  'format',
  'minimum',
  'maximum',
  'readOnly',
  'additionalProperties',
  'defaultObjectUI',
  'placeholder',
  'category',
  'depends_on',
  'unsafe_hidden'
]

// Plain JSON data only: functions and undefined are dropped, cycles cut.
function data(value, seen = new Set()) {
  if (value === null || typeof value !== 'object') {
    return typeof value === 'function' || value === undefined ? undefined : value
  }
  if (seen.has(value)) return undefined
  seen.add(value)
  let out
  if (Array.isArray(value)) {
    out = value.map((item) => {
      const copied = data(item, seen)
      return copied === undefined ? null : copied
    })
  } else {
    out = {}
    for (const [key, item] of Object.entries(value)) {
      const copied = data(item, seen)
      if (copied !== undefined) out[key] = copied
    }
  }
  seen.delete(value)
  return out
}

function field(definition) {
  const out = {}
  for (const key of FIELD_KEYS) {
    if (definition[key] !== undefined && typeof definition[key] !== 'function') {
      out[key] = data(definition[key])
    }
  }
  if (definition.properties && typeof definition.properties === 'object') {
    out.properties = fields(definition.properties)
  }
  // A function that lists the values the field may take, asked of the destination's API.
  if (definition.dynamic) out.dynamic = true
  return out
}

function fields(definitions) {
  const out = {}
  for (const [key, definition] of Object.entries(definitions || {})) {
    if (definition && typeof definition === 'object') out[key] = field(definition)
  }
  return out
}

function action(key, definition) {
  return {
    key,
    title: definition.title || key,
    description: definition.description || '',
    defaultSubscription: definition.defaultSubscription || null,
    platform: definition.platform || 'cloud',
    hidden: Boolean(definition.hidden),
    hasPerformBatch: typeof definition.performBatch === 'function',
    dynamicFields: Object.keys(definition.dynamicFields || {}),
    syncMode: definition.syncMode ? data(definition.syncMode) : null,
    fields: fields(definition.fields)
  }
}

function hooks(definition) {
  const found = []
  const audience = definition.audienceConfig || {}
  const authentication = definition.authentication || {}
  for (const name of ['createAudience', 'getAudience']) {
    if (typeof definition[name] === 'function' || typeof audience[name] === 'function') {
      found.push(name)
    }
  }
  if (typeof definition.onDelete === 'function') found.push('onDelete')
  for (const name of ['refreshAccessToken', 'testAuthentication']) {
    if (typeof authentication[name] === 'function') found.push(name)
  }
  return found
}

function destination(entry, id) {
  const definition = entry.definition
  const authentication = definition.authentication || {}
  return {
    id,
    directory: entry.directory,
    name: definition.name,
    slug: definition.slug || null,
    description: definition.description || '',
    mode: definition.mode || 'cloud',
    authentication: {
      scheme: authentication.scheme || null,
      fields: fields(authentication.fields)
    },
    presets: (definition.presets || []).map((preset) => ({
      name: preset.name,
      partnerAction: preset.partnerAction || null,
      subscribe: preset.subscribe || null,
      mapping: data(preset.mapping || {}),
      type: preset.type || 'automatic',
      eventSlug: preset.eventSlug || null
    })),
    actions: Object.entries(definition.actions || {}).map(([key, a]) => action(key, a)),
    hooks: hooks(definition),
    audienceFields: definition.audienceFields ? fields(definition.audienceFields) : null,
    audienceConfig: definition.audienceConfig ? data(definition.audienceConfig) : null
  }
}

function main() {
  const [dir, output] = process.argv.slice(2)
  if (!dir || !output) {
    console.error('usage: node catalog.js <installed dir> <output file>')
    process.exit(2)
  }
  const packageJson = require.resolve('@segment/action-destinations/package.json', {
    paths: [path.resolve(dir)]
  })
  const version = JSON.parse(fs.readFileSync(packageJson, 'utf8')).version
  const { manifest } = require(path.dirname(packageJson))
  const destinations = []
  const failed = []
  for (const [id, entry] of Object.entries(manifest)) {
    try {
      destinations.push(destination(entry, id))
    } catch (error) {
      failed.push({ id, directory: entry && entry.directory, error: String(error) })
    }
  }
  destinations.sort((a, b) => (a.directory < b.directory ? -1 : a.directory > b.directory ? 1 : 0))
  const document = { package: '@segment/action-destinations', version, destinations, failed }
  const temporary = `${output}.${process.pid}.tmp`
  fs.writeFileSync(temporary, JSON.stringify(document))
  fs.renameSync(temporary, output)
  console.log(`${destinations.length} definitions, ${failed.length} failed`)
}

main()
