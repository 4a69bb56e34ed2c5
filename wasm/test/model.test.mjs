// Node tests of the wasm build (run wasm/build.sh first): node --test wasm/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { Schemas, version } = require('../pkg/node/allpeers_wasm.js');

const image = {
  id: 'img-1',
  type: 'Image',
  properties: {
    owner: 'ap-me',
    created: '2026-11-25T03:00:00Z',
    modified: '2026-11-25T03:00:00Z',
    name: 'cat.png',
    mimeType: 'image/png',
    width: 640,
    thumbnail: 'AAEC',
  },
  meta: { rating: 5 },
};

test('version', () => {
  assert.match(version(), /^\d+\.\d+\.\d+/);
});

test('built-in types are loaded', () => {
  const s = new Schemas();
  const names = JSON.parse(s.typeNames());
  for (const t of ['Resource', 'Peer', 'File', 'Audio', 'Video', 'Image', 'Text', 'Link', 'List', 'Message', 'Chat', 'Share']) {
    assert.ok(names.includes(t), t);
  }
  const d = JSON.parse(s.describe('Image'));
  assert.deepEqual(d.lineage, ['Resource', 'File', 'Image']);
  assert.ok(d.properties.some((p) => p.name === 'size' && p.declaredBy === 'File'));
});

test('validates and normalises a resource', () => {
  const s = new Schemas();
  const v = JSON.parse(s.validate(JSON.stringify(image)));
  assert.equal(v.ok, true, JSON.stringify(v));
  assert.equal(v.resource.properties.created, '2026-11-25T03:00:00.000Z');
});

test('reports precise validation errors', () => {
  const s = new Schemas();
  const bad = structuredClone(image);
  bad.properties.width = 'wide';
  bad.properties.colour = 'red';
  delete bad.properties.name;
  const v = JSON.parse(s.validate(JSON.stringify(bad)));
  assert.equal(v.ok, false);
  const paths = v.errors.map((e) => e.path).sort();
  assert.deepEqual(paths, ['properties.colour', 'properties.name', 'properties.width']);
  assert.equal(JSON.parse(s.validate('{oops')).ok, false);
});

test('renders a generic view', () => {
  const s = new Schemas();
  const r = JSON.parse(s.render(JSON.stringify(image)));
  assert.equal(r.ok, true);
  assert.equal(r.view.title, 'cat.png');
  assert.equal(r.view.type_title, 'Image');
  const width = r.view.fields.find((f) => f.name === 'width');
  assert.equal(width.text, '640');
  assert.equal(width.label, 'Width');
});

test('registers app schemas at run time, refusing bad ones with file/line/reason', () => {
  const s = new Schemas();
  const photo = `<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1" ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <define name="Photo.content" ap:type="Photo" ap:extends="Image">
    <interleave>
      <ref name="Image.content"/>
      <optional><element name="camera"><data type="string"/></element></optional>
    </interleave>
  </define>
</grammar>`;
  const bad = JSON.parse(s.register('Photo.rng', photo.replace('type="string"', 'type="frobnicate"')));
  assert.equal(bad.ok, false);
  assert.deepEqual([bad.error.file, bad.error.line], ['Photo.rng', 5]);
  assert.match(bad.error.reason, /unknown datatype 'frobnicate'/);
  assert.ok(!JSON.parse(s.typeNames()).includes('Photo'));
  const ok = JSON.parse(s.register('Photo.rng', photo));
  assert.deepEqual(ok.types, ['Photo']);
  const p = { ...image, type: 'Photo', properties: { ...image.properties, camera: 'X100' } };
  assert.equal(JSON.parse(s.validate(JSON.stringify(p))).ok, true);
});

test('schema files from schemas/ load as app schemas too', () => {
  const s = new Schemas();
  const text = readFileSync(join(here, '../../schemas/Image.rng'), 'utf8');
  // Re-registering the identical built-in file is an (empty) evolution.
  assert.equal(JSON.parse(s.register('Image.rng', text)).ok, true);
});

test('queries are checked', () => {
  const s = new Schemas();
  const q = { type: 'File', where: [{ any: [{ prop: { name: 'size', op: '>', value: 10 } }, { isA: 'Image' }] }], limit: 5 };
  assert.equal(JSON.parse(s.checkQuery(JSON.stringify(q))).ok, true);
  const bad = JSON.parse(s.checkQuery(JSON.stringify({ type: 'File', where: [{ prop: { name: "x'; DROP TABLE", op: '=', value: 1 } }] })));
  assert.equal(bad.ok, false);
});

test('serialises to XML', () => {
  const s = new Schemas();
  const x = JSON.parse(s.toXml(JSON.stringify(image)));
  assert.equal(x.ok, true);
  assert.match(x.xml, /<Image xmlns="urn:allpeers:resource:1" id="img-1">/);
});
