// Validates what routerd sends on its OpenAI endpoints against OpenAI's own OpenAPI description
// (openai/openai-openapi openapi.json, kept in the team's shared/ folder beside the repository).
//
//   import { validate, assertValid } from './schema.mjs';
//   assertValid('CreateChatCompletionResponse', body);   // throws an AssertionError listing errors
//
// The spec is OpenAPI 3.1 (JSON Schema 2020-12) but still carries OpenAPI 3.0's `nullable: true`
// in places, beside the 3.1 way (anyOf with {type: "null"}). The loader rewrites every
// `nullable: true` into JSON Schema before ajv sees it: a typed schema gets "null" added to its
// type (and to its enum), anything else (a $ref, an allOf) is wrapped as anyOf [it, {type: null}].
// `discriminator` and the x-* vendor keys are left alone: ajv runs with strict: false, which
// ignores keywords it does not know. The whole components/schemas map is added as one document,
// so the spec's own "#/components/schemas/X" references resolve as written; ajv compiles only
// what a looked-up schema reaches.
//
// Where the spec is: $DUALROUTE_OPENAI_OPENAPI, else shared/openai-openapi/openapi.json next to
// the repository (../../../shared from this file, how the team's machines and CI lay it out).

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const SPEC_ID = 'https://dualroute.invalid/openai-openapi.json';

function specPath() {
  const candidates = [
    process.env.DUALROUTE_OPENAI_OPENAPI,
    fileURLToPath(new URL('../../../shared/openai-openapi/openapi.json', import.meta.url)),
    '/work/shared/openai-openapi/openapi.json',
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found)
    throw new Error(
      `OpenAI's openapi.json not found (tried: ${candidates.join(', ')}); ` +
        'set DUALROUTE_OPENAI_OPENAPI to its path',
    );
  return found;
}

/** OpenAPI 3.0 `nullable` -> JSON Schema, recursively; returns a new tree. */
export function denullable(node) {
  if (Array.isArray(node)) return node.map(denullable);
  if (!node || typeof node !== 'object') return node;
  const out = {};
  for (const [key, value] of Object.entries(node)) {
    // Property maps and $defs-like maps hold schemas under arbitrary names: recurse into each.
    out[key] = denullable(value);
  }
  if (!('nullable' in out)) return out;
  const nullable = out.nullable === true;
  delete out.nullable;
  if (!nullable) return out;
  if (typeof out.type === 'string' || Array.isArray(out.type)) {
    const types = Array.isArray(out.type) ? out.type : [out.type];
    if (!types.includes('null')) out.type = [...types, 'null'];
    if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    return out;
  }
  // No type of its own ($ref, allOf, anyOf, oneOf): null, or whatever it was.
  const { description, title, default: dflt, deprecated, ...rest } = out;
  const wrapped = { anyOf: [rest, { type: 'null' }] };
  if (description !== undefined) wrapped.description = description;
  if (title !== undefined) wrapped.title = title;
  if (dflt !== undefined) wrapped.default = dflt;
  if (deprecated !== undefined) wrapped.deprecated = deprecated;
  return wrapped;
}

let ajv;
const compiled = new Map();

function load() {
  if (ajv) return ajv;
  const spec = JSON.parse(readFileSync(specPath(), 'utf8'));
  const schemas = spec?.components?.schemas;
  if (!schemas) throw new Error('openapi.json has no components.schemas');
  ajv = new Ajv2020({
    strict: false,
    allErrors: true,
    validateSchema: false, // the spec is not a JSON Schema document itself
    allowUnionTypes: true,
    discriminator: false,
  });
  addFormats(ajv);
  // OpenAPI's own formats: numeric annotations and binary uploads; not checked.
  for (const f of ['unixtime', 'int32', 'int64', 'float', 'double', 'binary', 'byte', 'password'])
    ajv.addFormat(f, true);
  ajv.addSchema({ $id: SPEC_ID, components: { schemas: denullable(schemas) } });
  return ajv;
}

/** The names of all component schemas (for tests of the helper itself). */
export function schemaNames() {
  load();
  return Object.keys(ajv.getSchema(SPEC_ID).schema.components.schemas);
}

function validator(name) {
  let v = compiled.get(name);
  if (!v) {
    load();
    v = ajv.getSchema(`${SPEC_ID}#/components/schemas/${name}`);
    if (!v) throw new Error(`no schema components/schemas/${name} in openapi.json`);
    compiled.set(name, v);
  }
  return v;
}

/** Validates value against components/schemas/<name>: {valid, errors} (errors readable text). */
export function validate(name, value) {
  const v = validator(name);
  const valid = v(value);
  return {
    valid,
    errors: valid
      ? []
      : v.errors.map(
          (e) =>
            `${e.instancePath || '/'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`,
        ),
  };
}

/** Asserts that value validates against components/schemas/<name>. */
export function assertValid(name, value, what = name) {
  const { valid, errors } = validate(name, value);
  assert.ok(
    valid,
    `${what} does not validate against ${name}:\n  ${errors.slice(0, 20).join('\n  ')}\n` +
      `value: ${JSON.stringify(value).slice(0, 2000)}`,
  );
}
